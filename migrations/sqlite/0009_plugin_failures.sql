-- A plugin's failed calls in a row (the circuit breaker's count), kept across restarts: a
-- plugin that failed four times before a restart is disabled by its fifth failure after it.
-- Append-only: later changes go in new numbered files.

ALTER TABLE plugins ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
