-- A placeholder: migrations are numbered without gaps, and this branch's numbering
-- starts at 0010 (another branch holds 0009). Dropped when the branches merge.
SELECT 1;
