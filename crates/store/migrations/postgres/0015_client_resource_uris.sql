-- A client that is also a resource server lists the identifiers (RFC 8707
-- resource URIs) by which a token's `aud` names it, besides its client id:
-- introspection answers it only about tokens issued to it or addressed to
-- it (RFC 7662 §4). A JSON array of strings, like the other lists.
ALTER TABLE clients ADD COLUMN resource_uris TEXT NOT NULL DEFAULT '[]';
