vcl 4.1;
# Varnish with its shipped defaults: the backends in a round-robin director (needed to use more than one),
# everything else from the built-in VCL and default parameters (default_grace 10s, first_byte_timeout 60s,
# no probes, no retries).
import directors;

backend app1 {
  .host = "127.0.0.1";
  .port = "17101";
}

backend app2 {
  .host = "127.0.0.1";
  .port = "17102";
}

backend app3 {
  .host = "127.0.0.1";
  .port = "17103";
}

sub vcl_init {
  new lab = directors.round_robin();
  lab.add_backend(app1);
  lab.add_backend(app2);
  lab.add_backend(app3);
}

sub vcl_recv {
  set req.backend_hint = lab.backend();
}
