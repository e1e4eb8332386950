#!/bin/sh
# Starts the compose file's Redis locked: ACL users from redis-users.acl.template with the
# SHA-256 of each password from its Docker secret (no password in clear in any file, on a
# command line or in a log), the default user off, protected mode on, AOF everysec.
# Regenerate the template after changing redis_prefix:
#   esafety redis acl --template --prefix YOUR_PREFIX > docker/redis-users.acl.template
set -eu
umask 077
secrets=${ESAFETY_SECRETS_DIR:-/run/secrets}
template=${ESAFETY_ACL_TEMPLATE:-/usr/local/etc/esafety/redis-users.acl.template}
conf_dir=${ESAFETY_REDIS_CONF_DIR:-/run/esafety-redis}
mkdir -p "$conf_dir"
sha() {
  # The password is the secret's first line, without its line ending (as esafety reads it).
  head -n 1 "$1" | tr -d '\r\n' | sha256sum | cut -d ' ' -f 1
}
admin_hash=$(sha "$secrets/redis_admin_password")
proxy_hash=$(sha "$secrets/redis_proxy_password")
sed -e "s/@ADMIN_PASSWORD_SHA256@/$admin_hash/" -e "s/@PROXY_PASSWORD_SHA256@/$proxy_hash/" \
  "$template" > "$conf_dir/users.acl"
cat > "$conf_dir/redis.conf" <<CONF
port ${REDIS_PORT:-6379}
aclfile $conf_dir/users.acl
protected-mode yes
dir ${REDIS_DATA_DIR:-/data}
appendonly yes
appendfsync everysec
save ""
CONF
if [ "$(id -u)" = 0 ] && id redis > /dev/null 2>&1; then
  chown -R redis:redis "$conf_dir"
fi
# The image's entrypoint drops to the redis user before starting the server.
exec ${REDIS_ENTRYPOINT-docker-entrypoint.sh} redis-server "$conf_dir/redis.conf"
