-- Where each output file was produced (PostgreSQL). Keep in step with
-- ../sqlite/0005_file_urls.sql. The producer signs its download base into every file of a
-- Proof or Verification (`TxFile.url`); a node that received the transaction from a peer
-- sends clients there for files it does not hold. Rows stored before this step read ''
-- (files this node produced or holds).

ALTER TABLE tx_files ADD COLUMN url TEXT NOT NULL DEFAULT '';
