-- Users, functions, their deployments (versions), invocations and logs.

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TABLE functions (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id              uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                 text NOT NULL,
    status               text NOT NULL DEFAULT 'building'
                         CHECK (status IN ('building', 'ready', 'failed')),
    active_deployment_id uuid,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);

CREATE TABLE deployments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    function_id uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    version     integer NOT NULL CHECK (version > 0),
    status      text NOT NULL DEFAULT 'building'
                CHECK (status IN ('building', 'ready', 'failed')),
    error       text,
    image       text,
    entry_point text NOT NULL,
    -- The service instance (INSTANCE_ID) that runs the build, so that a
    -- restarted instance fails only its own interrupted builds.
    instance_id text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    UNIQUE (function_id, version)
);
CREATE INDEX deployments_building_idx ON deployments (status) WHERE status = 'building';

ALTER TABLE functions
    ADD CONSTRAINT functions_active_deployment_fkey
    FOREIGN KEY (active_deployment_id) REFERENCES deployments (id) ON DELETE SET NULL;

CREATE TABLE function_invocations (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    function_id   uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    deployment_id uuid REFERENCES deployments (id) ON DELETE SET NULL,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'success', 'error', 'timeout')),
    exit_code     integer,
    duration_ms   integer,
    error         text,
    output        text,
    stdout_bytes  bigint,
    stderr_bytes  bigint,
    instance_id   text NOT NULL,
    timestamp     timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX function_invocations_function_idx ON function_invocations (function_id, timestamp DESC);
CREATE INDEX function_invocations_running_idx ON function_invocations (status) WHERE status = 'running';

-- A bigint identity rather than a UUID, because it orders log lines exactly
-- and serves as the page cursor of the logs API.
CREATE TABLE function_logs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    function_id uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    -- The invocation a line came from; NULL for build and deployment lines.
    -- No foreign key, so that logs can be written before the invocation row.
    invocation_id uuid,
    level       text NOT NULL CHECK (level IN ('build', 'stderr', 'info', 'warning', 'error')),
    message     text NOT NULL,
    timestamp   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX function_logs_function_idx ON function_logs (function_id, id DESC);
CREATE INDEX function_logs_function_level_idx ON function_logs (function_id, level, id DESC);
