-- Who belongs to which project, with which role.
CREATE TABLE memberships (
    project_id  bigint      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text        NOT NULL DEFAULT 'member'
                CONSTRAINT memberships_role_check CHECK (role IN ('owner', 'maintainer', 'member')),
    joined_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);

CREATE VIEW project_members AS
    SELECT p.id AS project_id, p.name AS project, u.username, m.role, m.joined_at
    FROM memberships m
    JOIN projects p ON p.id = m.project_id
    JOIN users u ON u.id = m.user_id;
