-- Codes by the session that approved them (version 10, PostgreSQL). Never edited once applied.
--
-- Ending a session (sign-out, "Sign out everywhere", a withdrawn consent) closes what its codes
-- may still give: the codes not redeemed yet expire, and the access tokens redeemed from them
-- outside a refresh-token family are revoked (close_session_codes in src/store/logout.rs).
CREATE INDEX auth_codes_sid ON auth_codes (sid, domain);
CREATE INDEX device_codes_sid ON device_codes (sid, domain);
