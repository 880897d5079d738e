'use strict';
// Shared by the scripts: configuration from the environment, and exit when
// stdin closes so that a killed test binary leaves no node process behind.
// Keys and tokens are never printed.

function config() {
  const { RELAY_URL, RELAY_KEY_NAME, RELAY_KEY } = process.env;
  if (!RELAY_URL || !RELAY_KEY_NAME || !RELAY_KEY) {
    console.error('error: RELAY_URL, RELAY_KEY_NAME and RELAY_KEY must be set');
    process.exit(2);
  }
  return { url: RELAY_URL, keyName: RELAY_KEY_NAME, key: RELAY_KEY };
}

// errorText describes an error event without the event object itself,
// which may hold the request headers (and so the token).
function errorText(e) {
  if (e && e.message) return String(e.message);
  if (e && e.error && e.error.message) return String(e.error.message);
  return 'unknown error';
}

function exitWithStdin() {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

module.exports = { config, errorText, exitWithStdin };
