-- 0009_admin: the admin API's lookups of an identity by address.
--
-- otpd admin identities find --address (GET /v1/admin/identities?address=)
-- finds the identities whose provider identity has the address as
-- entity_id, whatever the provider (the unique index leads with provider),
-- and those linked to an actor with the address as email or phone,
-- verified or not (the unique indexes cover only verified accounts).
-- Partial: most actors have one of the two.
CREATE INDEX provider_identities_entity_idx ON provider_identities (tenant, entity_id);
CREATE INDEX actors_email_idx ON actors (tenant, email) WHERE email <> '';
CREATE INDEX actors_phone_idx ON actors (tenant, phone) WHERE phone <> '';
