-- Each replica's evidence chain, copied line for line from its log: the copy that survives
-- losing the replica. A row's `line` is exactly the line its log holds (without the newline),
-- so the verifier that checks files checks these rows.

-- One row per record of a replica's chain; `seq` as in the line (the verifier checks that it
-- does match, so a row moved or swapped is found).
CREATE TABLE evidence_record (
    replica text NOT NULL,
    seq bigint NOT NULL,
    line text NOT NULL,
    PRIMARY KEY (replica, seq)
);

-- Each replica's chain: the public key its checkpoints and heads are signed with, and the head
-- of what was copied (the same signed JSON as a log's head file), replaced in the transaction
-- that copies the lines it names, so rows cut from the end show.
CREATE TABLE evidence_chain (
    replica text PRIMARY KEY,
    public_key text NOT NULL,
    head text NOT NULL,
    -- The process (`host:pid`) that copied last.
    written_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
