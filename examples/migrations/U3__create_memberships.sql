DROP VIEW project_members;
DROP TABLE memberships;
