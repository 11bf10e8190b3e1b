-- Order data with the column names of the GOMFLOW core schema. Created only where absent, so
-- the service can point at the real core database and leave its tables alone.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE IF NOT EXISTS profiles (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    email text,
    phone text,
    country text NOT NULL DEFAULT 'PH',
    timezone text NOT NULL DEFAULT 'Asia/Manila',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES profiles (id),
    title text NOT NULL,
    description text,
    price numeric(12, 2) NOT NULL CHECK (price >= 0),
    currency text NOT NULL CHECK (currency IN ('PHP', 'MYR')),
    deadline timestamptz NOT NULL,
    slug text UNIQUE,
    payment_methods jsonb NOT NULL DEFAULT '[]'::jsonb,
    is_active boolean NOT NULL DEFAULT true,
    auto_close_on_deadline boolean NOT NULL DEFAULT true,
    min_orders integer NOT NULL DEFAULT 1,
    max_orders integer,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS submissions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id uuid NOT NULL REFERENCES orders (id),
    buyer_name text NOT NULL,
    buyer_phone text,
    buyer_email text,
    buyer_platform text NOT NULL DEFAULT 'web'
        CHECK (buyer_platform IN ('whatsapp', 'telegram', 'discord', 'web')),
    buyer_platform_id text,
    quantity integer NOT NULL CHECK (quantity > 0),
    total_amount numeric(12, 2) NOT NULL,
    currency text NOT NULL CHECK (currency IN ('PHP', 'MYR')),
    payment_reference text NOT NULL UNIQUE,
    payment_url text,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'paid', 'failed', 'expired', 'cancelled')),
    last_reminder_sent timestamptz,
    reminder_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS submissions_order_id_idx ON submissions (order_id);
