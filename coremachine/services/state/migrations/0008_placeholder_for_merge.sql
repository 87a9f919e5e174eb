-- A placeholder: migrations are numbered without gaps, and this branch's numbering
-- starts at 0010 (another branch holds 0008). Dropped when the branches merge.
SELECT 1;
