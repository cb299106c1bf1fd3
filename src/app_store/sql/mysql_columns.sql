-- The columns of table ? in the current database: name, type, and whether an insert must
-- give a value (NOT NULL without a default).
SELECT COLUMN_NAME, DATA_TYPE, (IS_NULLABLE = 'NO' AND COLUMN_DEFAULT IS NULL)
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?
ORDER BY ORDINAL_POSITION
