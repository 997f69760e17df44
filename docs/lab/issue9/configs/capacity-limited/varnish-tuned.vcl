vcl 4.1;
# Varnish configured for resilience as an experienced operator would (Varnish User's Guide, "Grace mode and
# keep", "Health checks"; vcl_backend_error retries): probes mark a dead backend sick within ~2 s, the
# round-robin director skips sick backends, failed fetches are retried on the next backend, 5xx answers are
# retried and never replace a graced copy, and objects are kept 1 h past their TTL to stand in for errors.
import std;
import directors;

probe health {
  .url = "/__lab/health";
  .interval = 1s;
  .timeout = 500ms;
  .window = 3;
  .threshold = 2;
  .initial = 2;
}

backend app1 {
  .host = "127.0.0.1";
  .port = "17101";
  .connect_timeout = 1s;
  .first_byte_timeout = 3s;
  .between_bytes_timeout = 3s;
  .probe = health;
}

sub vcl_init {
  new lab = directors.round_robin();
  lab.add_backend(app1);
}

sub vcl_recv {
  set req.backend_hint = lab.backend();
  # Serve objects at most 10 s past their TTL while the backends are healthy (then fetch), the full
  # beresp.grace when they are not.
  if (std.healthy(req.backend_hint)) {
    set req.grace = 10s;
  }
}

sub vcl_backend_response {
  # Retry origin errors on the next backend (the director is resolved again on retry).
  if (beresp.status >= 500 && bereq.retries < 2) {
    return (retry);
  }
  # A failed background refresh must not replace the graced copy.
  if (beresp.status >= 500 && bereq.is_bgfetch) {
    return (abandon);
  }
  # A foreground fetch relays the error, without the built-in 2-minute hit-for-miss for the URL.
  if (beresp.status >= 500) {
    set beresp.ttl = 1s;
    set beresp.uncacheable = true;
    return (deliver);
  }
  set beresp.grace = 1h;
}

sub vcl_backend_error {
  # Connection refused/reset, first-byte timeout...: try the next backend.
  if (bereq.retries < 2) {
    return (retry);
  }
}
