-- The replicas serving one deployment and the policy each serves (its content digest), so that
-- one serving another policy than the rest is reported.
CREATE TABLE replica (
    name text PRIMARY KEY,
    policy_digest text NOT NULL,
    seen_at timestamptz NOT NULL
);
