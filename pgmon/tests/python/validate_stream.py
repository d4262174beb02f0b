"""Reads every event of pgmon's snapshot stream with nats-py (a client that is not pgmon) and
validates each against the published JSON Schema of the event contract.

Usage: validate_stream.py NATS_URL SCHEMA_PATH NKEY_SEED_FILE (the reader role's key, as the
nats CLI would use it)
Prints a JSON summary ({"events": N, "kinds": {...}}); exits 1 naming each invalid event."""

import asyncio
import json
import sys

import jsonschema
import nats


async def main(nats_url: str, schema_path: str, seed_file: str) -> int:
    with open(schema_path, encoding="utf-8") as schema_file:
        schema = json.load(schema_file)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    connection = await nats.connect(
        nats_url, nkeys_seed=seed_file, inbox_prefix="_INBOX_reader", max_reconnect_attempts=0, allow_reconnect=False
    )
    try:
        jetstream = connection.jetstream()
        state = (await jetstream.stream_info("PGMON")).state
        kinds: dict[str, int] = {}
        failures = []
        for sequence in range(state.first_seq, state.last_seq + 1):
            message = await jetstream.get_msg("PGMON", seq=sequence)
            event = json.loads(message.data)
            errors = sorted(validator.iter_errors(event), key=lambda error: list(error.path))
            expected_subject = f"pgmon.snap.{event.get('target')}.{event.get('kind')}"
            if message.subject != expected_subject:
                failures.append(f"#{sequence} on {message.subject} names {expected_subject}")
            for error in errors[:3]:
                failures.append(f"#{sequence} ({message.subject}) at {list(error.path)}: {error.message[:300]}")
            kinds[event.get("kind")] = kinds.get(event.get("kind"), 0) + 1
    finally:
        await connection.close()
    print(json.dumps({"events": sum(kinds.values()), "kinds": kinds}))
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3])))
