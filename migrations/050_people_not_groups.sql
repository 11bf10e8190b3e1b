-- A contact is a person. Before authority followed the person, a Telegram group (a negative
-- chat id) could be recorded as a buyer's or a GOM's address; what is private never goes to
-- a group, so those addresses are dropped (the person's own chat is linked again when they
-- next write to the bot).
DELETE FROM contact_addresses WHERE channel = 'telegram' AND address LIKE '-%';
