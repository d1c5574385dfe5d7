-- API keys may also carry read permissions (traces:read, metrics:read, logs:read), for tools
-- that read telemetry with a key (Grafana).
-- Append-only: later changes go in new numbered files.

ALTER TABLE api_key_permissions DROP CONSTRAINT api_key_permissions_permission_check;
ALTER TABLE api_key_permissions ADD CONSTRAINT api_key_permissions_permission_check
    CHECK (permission IN ('traces:write', 'metrics:write', 'logs:write', 'monitors:report',
        'traces:read', 'metrics:read', 'logs:read'));
