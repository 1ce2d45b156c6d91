-- The pins in force for each upstream (its tool, prompt and resource template definitions as a
-- person accepted them), shared by every replica: a definition accepted through one replica is
-- in force on every other, and first sight under `tofu` is recorded once, by whichever replica
-- lists the upstream first.

-- One row per upstream. `pins` is the gateway's document for the upstream (per kind, per name,
-- the accepted definition and its digest), kept as `json`, not `jsonb`: `json` keeps the text
-- as written, so every digest still matches its definition when read back. `version` grows by
-- one at every write, so a replica notices another's acceptance by reading the versions alone.
-- A first sight is inserted only if the upstream has no row (`ON CONFLICT DO NOTHING`); an
-- acceptance changes the row under its lock (`SELECT ... FOR UPDATE`), so two acceptances at
-- once both stay.
CREATE TABLE upstream_pins (
    upstream text PRIMARY KEY,
    pins json NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    written_by text NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
);
