-- Who acted (the command line, an admin API client, a client acting for
-- itself) and which client an event concerns: client and signing-key
-- changes and revocations are audited with them (AuditEvent::by and
-- AuditEvent::client_id). Adding columns updates no row, so the
-- append-only triggers do not fire; older events have NULL in both.
ALTER TABLE audit_events ADD COLUMN by_whom TEXT;
ALTER TABLE audit_events ADD COLUMN client_id TEXT;
