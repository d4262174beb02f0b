ALTER TABLE activity_snapshots ADD COLUMN part_index INTEGER;
     ALTER TABLE activity_snapshots ADD COLUMN part_count INTEGER;