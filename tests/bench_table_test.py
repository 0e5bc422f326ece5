#!/usr/bin/env python3
"""Unit test of `tests/bench_table.py --check` on made-up results (no timing here: the
figures are invented): one file that meets every budget, and files that miss one or lack
one. Run: python3 tests/bench_table_test.py (tests/run does)."""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_table  # noqa: E402

COLD = "Lambda cold start (release binary, Runtime API + emulator on 127.0.0.1)"
ROUND = "AWS requests per chat round (send → dispatch → reply pushed)"


def row(section, item, median, p99=None, unit="ms", note=""):
    return {"section": section, "item": item, "median": median, "p99": p99, "unit": unit,
            "note": note}


def meeting_all():
    rows = [row("Warm handler, in-process (in-memory ports)", "send", 20.0, 40.0, "µs")]
    for f, init in [("session", 1.9), ("send", 2.0), ("dispatch", 2.1), ("hello_lambda", 1.5)]:
        rows += [
            row(COLD, f"{f}: init (exec → first next)", init, init + 1),
            row(COLD, f"{f}: first answer (exec → response)", init + 5, init + 9),
            row(COLD, f"{f}: warm invocation", 3.0, 4.0),
        ]
    rows += [
        row(COLD, "webhook: warm invocation", 3.0, 4.0),
        # Secrets from SSM and the Node.js peer are reported, never held to the floor.
        row(COLD, "session (SSM): init (exec → first next)", 9.0, 11.0),
        row(COLD, "node20-connect (peer): init (exec → first next)", 60.0, 70.0),
        row(COLD, "node20-connect (peer): warm invocation", 9.0, 11.0),
    ]
    for f, mib in [("session", 6.9), ("send", 7.5), ("dispatch", 6.1)]:
        rows.append(row("arm64 artifact size (sam build, bootstrap)", f, mib, unit="MiB"))
    rows += [
        row(ROUND, "DynamoDB.GetItem", 2, unit="requests", note="2 with 10 connections"),
        row(ROUND, "DynamoDB.Query", 1, unit="requests", note="1 with 10 connections"),
        row(ROUND, "PostToConnection", 3, unit="requests", note="12 with 10 connections"),
        row(ROUND, "SQS.SendMessage", 1, unit="requests", note="1 with 10 connections"),
        row(ROUND, "DynamoDB read units", 3.0, unit="per round", note="3.0 with 10 connections"),
        row(ROUND, "DynamoDB write units", 6.0, unit="per round", note="6.0 with 10 connections"),
        row(ROUND, "total AWS requests", 11, unit="requests", note="20 with 10 connections"),
        row("chat-local (release, SQLite on disk)",
            "round trip: WebSocket send → dev-bot reply (1000 turns)", 1.2, 3.0),
        row("chat-local under load", "deliveries missing (user messages / replies)", 0,
            unit="", note="0 / 0"),
    ]
    return rows


def replace(rows, item, **fields):
    out = []
    for r in rows:
        out.append(dict(r, **fields) if r["item"] == item else r)
    assert out != rows, f"no row {item}"
    return out


class CheckTest(unittest.TestCase):
    def run_check(self, rows):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            status = bench_table.check(rows)
        return status, buf.getvalue()

    def assertMissed(self, out, budget, verdict="NOT MET"):
        """Exactly one budget missed: `budget`."""
        lines = [l.strip() for l in out.splitlines() if l.strip().startswith("NOT")]
        self.assertEqual(len(lines), 1, out)
        self.assertTrue(lines[0].startswith(verdict), out)
        self.assertIn(budget, lines[0], out)

    def test_results_meeting_every_budget_pass(self):
        status, out = self.run_check(meeting_all())
        self.assertEqual(status, 0, out)
        self.assertIn("every budget met", out)
        self.assertNotIn("NOT", out)

    def test_init_over_the_floor_fails(self):
        rows = replace(meeting_all(), "send: init (exec → first next)", median=2.4)
        status, out = self.run_check(rows)
        self.assertEqual(status, 1, out)
        self.assertMissed(out, "init within 1.5×")

    def test_a_big_arm64_artifact_fails(self):
        # 7.7 MiB is 8.07 MB.
        rows = replace(meeting_all(), "send", median=7.7)
        status, out = self.run_check(rows)
        self.assertEqual(status, 1, out)
        self.assertMissed(out, "each arm64 artifact")

    def test_a_read_per_extra_connection_fails(self):
        rows = replace(meeting_all(), "DynamoDB.Query", note="10 with 10 connections")
        status, out = self.run_check(rows)
        self.assertEqual(status, 1, out)
        self.assertMissed(out, "no read per extra connection")

    def test_too_many_requests_fail(self):
        rows = replace(meeting_all(), "total AWS requests", median=13, note="21 with 10 connections")
        status, out = self.run_check(rows)
        self.assertEqual(status, 1, out)
        self.assertMissed(out, "≤ 12 AWS requests")

    def test_a_slow_local_round_trip_fails(self):
        item = "round trip: WebSocket send → dev-bot reply (1000 turns)"
        status, out = self.run_check(replace(meeting_all(), item, median=2.0))
        self.assertEqual(status, 1, out)
        self.assertMissed(out, "chat-local round trip")

    def test_a_costly_round_fails(self):
        rows = replace(meeting_all(), "DynamoDB write units", median=20.0)
        status, out = self.run_check(rows)
        self.assertEqual(status, 1, out)
        self.assertMissed(out, "1M chat rounds ≤ $12")

    def test_a_budget_not_measured_fails(self):
        rows = [r for r in meeting_all() if not r["section"].startswith("arm64")]
        status, out = self.run_check(rows)
        self.assertEqual(status, 1, out)
        self.assertMissed(out, "each arm64 artifact", "NOT MEASURED")

    def test_the_command_line_exits_with_the_verdict(self):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_table.py")
        for rows, want in [(meeting_all(), 0), (replace(meeting_all(), "send", median=9.0), 1)]:
            with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
                f.write("".join(json.dumps(r) + "\n" for r in rows))
            try:
                p = subprocess.run([sys.executable, script, f.name, "--check"],
                                   capture_output=True, text=True, check=False)
            finally:
                os.unlink(f.name)
            self.assertEqual(p.returncode, want, p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
