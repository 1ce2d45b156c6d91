-- The approval page's ledger, shared by every replica: the approvals waiting for a person
-- outside the client (on the page, or `portcullis approve ID` in a terminal). One opened
-- through one replica is seen, decided and claimed through any other; each runs its call at
-- most once, because every change of `state` is one conditional statement (`decide` only from
-- 'waiting', `claim` only from 'approved', both only while unexpired) or a transaction under
-- the user's advisory lock (`open`: at most one live approval per user and action, and a limit
-- of waiting ones per user). Times are Unix seconds by the database's clock: every replica
-- sees an approval expire at the same moment.
CREATE TABLE approval_ledger (
    -- 128 random bits in hex, made by the gateway: the page's link names it.
    id text PRIMARY KEY,
    fingerprint text NOT NULL,
    user_name text NOT NULL,
    tool text NOT NULL,
    -- The change request as the page shows it (the gateway caps its length).
    request text NOT NULL,
    -- Four eyes: the subject who may not approve it (the gateway's rule reads it).
    not_by text,
    created bigint NOT NULL,
    expires bigint NOT NULL,
    state text NOT NULL CHECK (state IN ('waiting', 'approved', 'declined', 'used')),
    -- Who decided, and when; when it was used.
    decided_by text,
    decided_at bigint,
    used_at bigint,
    opened_by text NOT NULL,
    -- The order approvals were opened in (what the page and `portcullis approvals` list).
    opened_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- At most one approval per user and action that is not used: `open` finds it instead of
-- opening a second (expired ones are removed first, under the user's lock). A bug that
-- raced past the lock fails on this index instead of opening two.
CREATE UNIQUE INDEX approval_ledger_action ON approval_ledger (user_name, fingerprint)
    WHERE state <> 'used';
