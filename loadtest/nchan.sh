#!/usr/bin/env bash
# nginx + nchan, the peer in loadtest/peers.sh: Debian's nginx-light and libnginx-mod-nchan
# (installed with apt-get when missing), one worker, on 127.0.0.1:PORT, run in the foreground
# until stopped (SIGINT/SIGTERM/SIGQUIT to this process, which becomes nginx's master). Usage:
#   loadtest/nchan.sh PORT [DIR]
#   loadtest/nchan.sh install          only the apt-get step, then exit
# DIR (default: a new temp dir) receives nginx.conf, the logs and nginx's temp files; nothing
# is written outside it. The worker is the master's only child: read its CPU and RSS from
# /proc/<master>/task/<master>/children.
#
# Dialect (what `understudy-loadtest --dialect nchan` speaks): POST /pub?id=<channel> publishes
# its body; GET /sub/<channel> subscribes as a WebSocket (Upgrade) or an EventSource
# (Accept: text/event-stream) and gets each body verbatim. Each channel keeps its last 1,000
# messages for at most 600 s in up to 256 MiB, as understudy's default [history] does.
set -euo pipefail

PORT=${1:?usage: nchan.sh PORT [DIR] | nchan.sh install}
MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so

if ! command -v nginx > /dev/null || [ ! -f "$MODULE" ]; then
  echo "installing nginx-light and libnginx-mod-nchan" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The packages' maintainer scripts may try to start the system nginx; nothing here needs it.
  apt-get install -y --no-install-recommends nginx-light libnginx-mod-nchan >&2 \
    || { apt-get update >&2 && apt-get install -y --no-install-recommends nginx-light libnginx-mod-nchan >&2; }
fi
[ "$PORT" = install ] && exit 0

DIR=${2:-$(mktemp -d "${TMPDIR:-/tmp}/nchan.XXXXXX")}

mkdir -p "$DIR/tmp"
DIR=$(cd "$DIR" && pwd)
cat > "$DIR/nginx.conf" <<CONF
load_module $MODULE;
daemon off;
worker_processes 1;
# 10,000 idle subscribers in scenario (c), plus publishers and slack.
worker_rlimit_nofile 65536;
pid $DIR/nginx.pid;
error_log $DIR/error.log warn;
events {
  worker_connections 30000;
}
http {
  access_log off;
  client_body_temp_path $DIR/tmp/body;
  proxy_temp_path $DIR/tmp/proxy;
  fastcgi_temp_path $DIR/tmp/fastcgi;
  uwsgi_temp_path $DIR/tmp/uwsgi;
  scgi_temp_path $DIR/tmp/scgi;
  # nchan wants a publish body in one memory buffer, never in a temp file.
  client_body_buffer_size 64k;
  client_max_body_size 64k;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  nchan_shared_memory_size 256M;
  nchan_message_buffer_length 1000;
  nchan_message_timeout 600s;
  server {
    listen 127.0.0.1:$PORT;
    location = /pub {
      nchan_publisher;
      nchan_channel_id \$arg_id;
    }
    location ~ ^/sub/([A-Za-z0-9_-]+)\$ {
      nchan_subscriber websocket eventsource;
      nchan_channel_id \$1;
      nchan_subscriber_first_message newest;
    }
  }
}
CONF

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "nchan on 127.0.0.1:$PORT (config and logs in $DIR)" >&2
exec nginx -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/error.log"
