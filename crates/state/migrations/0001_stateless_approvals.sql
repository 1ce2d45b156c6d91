-- Stateless approvals and their claims: the at-most-once guard of an approved call, whichever
-- replica its retries reach.

-- An approval handed to a stateless client (its id is sealed into the client's requestState),
-- bound to the fingerprint of one action, answerable until it expires.
CREATE TABLE stateless_approval (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint text NOT NULL,
    opened_by text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- The one claim of an approval: the primary key is what lets exactly one replica run the call,
-- however the retries are spread (a second insert finds the row and inserts nothing).
CREATE TABLE approval_claim (
    approval_id bigint PRIMARY KEY REFERENCES stateless_approval (id) ON DELETE CASCADE,
    fingerprint text NOT NULL,
    claimed_by text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    -- Until when a retry of the same request gets the outcome instead of a refusal.
    kept_until timestamptz NOT NULL,
    finished boolean NOT NULL DEFAULT false,
    -- The call's result when it finished in one answer (replayed to a retry), else null.
    result jsonb,
    UNIQUE (fingerprint, approval_id)
);

CREATE INDEX stateless_approval_expires ON stateless_approval (expires_at);
