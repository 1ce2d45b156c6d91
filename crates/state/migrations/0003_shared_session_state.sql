-- Delegated grants (each user's OAuth tokens for an upstream), known recipients, and stateless
-- clients' scoped answers and taint, shared by every replica: what one stores or removes, every other sees.

-- One grant per user (issuer and subject) and upstream. `sealed` is the grant encrypted with the
-- credential store key and bound to these three columns (`PGRNT1` || nonce || ciphertext): the
-- database never holds a token in the clear, and a row moved to another user does not decrypt.
-- A refresh holds the row's lock (`SELECT ... FOR UPDATE`) from reading it to writing the
-- refreshed one, so a rotating refresh token is spent once.
CREATE TABLE delegated_grant (
    issuer text NOT NULL,
    subject text NOT NULL,
    upstream text NOT NULL,
    sealed bytea NOT NULL,
    written_by text NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject, upstream)
);

-- The recipients each user has approved a call to (`user_name` is issuer and subject as the
-- gateway writes them), so that a recipient approved through one replica is not "new" on
-- another. Rows are only added: a recipient is known from its first approval on.
CREATE TABLE known_recipient (
    user_name text NOT NULL,
    recipient text NOT NULL,
    known_since timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_name, recipient)
);

-- The session-scoped answers of stateless (2026-07-28) clients, which have no session and so no
-- replica of their own: a person's "for this session" chosen through one replica covers the
-- calls like it through every other, until it expires. `scope` is the gateway's pattern as
-- JSON; times are the gateway's clock (Unix seconds), as it decides with them.
CREATE TABLE scoped_answer (
    id text PRIMARY KEY,
    -- The stateless user and client it was chosen by (the gateway's taint key).
    holder_key text NOT NULL,
    user_name text NOT NULL,
    scope jsonb NOT NULL,
    fingerprint text NOT NULL,
    approved_at bigint NOT NULL,
    expires_at bigint NOT NULL
);

CREATE INDEX scoped_answer_holder ON scoped_answer (holder_key, user_name);

-- What stateless clients (no session: any replica) have been exposed to, by the gateway's taint
-- key of the user and client: the untrusted upstreams whose content reached them (their side
-- effects need approval from then on, whichever replica they reach), and the hosts their calls
-- reached. Rows are only added: a client's taint lasts as long as the deployment keeps it.
CREATE TABLE client_taint (
    holder_key text NOT NULL,
    upstream text NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (holder_key, upstream)
);

CREATE TABLE client_host (
    holder_key text NOT NULL,
    host text NOT NULL,
    PRIMARY KEY (holder_key, host)
);
