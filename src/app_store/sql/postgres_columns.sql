-- The columns of table $1 in the current schema: name, type, and whether an insert must
-- give a value (NOT NULL without a default).
SELECT column_name::text, udt_name::text, (is_nullable = 'NO' AND column_default IS NULL)
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = $1
ORDER BY ordinal_position
