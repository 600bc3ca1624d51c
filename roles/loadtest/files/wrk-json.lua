-- wrk's figures as one JSON line (marked "WRK-JSON "), for playbooks/loadtest.yml to read:
-- the rate, the latency percentiles in milliseconds and every kind of error wrk counts.
-- "status" counts answers of 400 and above.
done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests": %d, "seconds": %.3f, "rate": %.1f, "bytes": %d, ' ..
    '"latency_ms": {"mean": %.3f, "p50": %.3f, "p95": %.3f, "p99": %.3f, "max": %.3f}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}}\n',
    summary.requests, seconds, summary.requests / seconds, summary.bytes,
    latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    errors.connect, errors.read, errors.write, errors.timeout, errors.status))
end
