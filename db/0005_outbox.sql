-- soakd schema: the outbox. Every mail soakd sends (the nightly digest, an immediate alert) is
-- written here first, complete, and sent from here: an SMTP outage delays a mail, never loses
-- it, and a row marked sent is never sent again.

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL,   -- 'digest' | 'alert'
    created_at      INTEGER NOT NULL,
    window_from     INTEGER,            -- the log window a digest covers (NULL for an alert)
    window_to       INTEGER,
    subject         TEXT    NOT NULL,
    envelope_from   TEXT    NOT NULL,   -- SMTP MAIL FROM
    envelope_to     TEXT    NOT NULL,   -- JSON array of SMTP RCPT TO addresses
    message_id      TEXT    NOT NULL,   -- the Message-ID header inside `message`
    message         BLOB    NOT NULL,   -- the whole RFC 5322 message, as sent (an .eml file)
    status          TEXT    NOT NULL DEFAULT 'pending',  -- 'pending' | 'sent'
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,   -- the daemon's next try (backoff after a failure)
    last_error      TEXT,               -- why the last try failed (no secrets)
    claimed_until   INTEGER,            -- a sender holds the row until then (one sender at a time)
    sent_at         INTEGER
);
CREATE INDEX outbox_pending ON outbox (status, next_attempt_at);
CREATE INDEX outbox_kind ON outbox (kind, created_at);
