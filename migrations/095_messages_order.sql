-- Which order a message is about (a buyer's submission's order), so the console shows a GOM
-- only the messages about their own orders: a buyer of two GOMs' orders gets messages from
-- both, and the contact alone cannot tell them apart. NULL for messages about no order (a
-- direct send, a GOM's own alerts). Messages written before this column stay NULL.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS order_id uuid;

-- An order's page finds the last message about the order to each of its buyers.
CREATE INDEX IF NOT EXISTS messages_order_contact_idx
    ON messages (order_id, contact_id, created_at DESC) WHERE order_id IS NOT NULL;
