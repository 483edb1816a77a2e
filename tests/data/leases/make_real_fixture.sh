#!/bin/sh
# Make real-dhcpd-4.4.3.leases with the real ISC dhcpd: one server and one dhclient in two
# network namespaces joined by a veth pair (192.0.2.0/24, no route out). The client binds,
# releases, and binds again, so the file holds several blocks for one address, the `set`
# variables and `on release`/`on expiry` blocks of leasedns' own dhcpd snippet (with /bin/true
# as the hook). Run as root: sh tests/data/leases/make_real_fixture.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
snippet="$here/../../../src/leasedns/templates/dhcpd-hooks.conf"
work=$(mktemp -d /tmp/leasedns-fx.XXXXXX)
srv=leasedns-fx-srv-$$
cli=leasedns-fx-cli-$$
pids=""

cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    ip netns del "$srv" 2>/dev/null || true
    ip netns del "$cli" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

ip netns add "$srv"
ip netns add "$cli"
ip link add fxs0 netns "$srv" type veth peer name eth0 netns "$cli"
ip -n "$srv" link set fxs0 name eth0
for ns in "$srv" "$cli"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "$ns" link set lo up
done
ip -n "$cli" link set eth0 address 02:00:00:00:00:0a
ip -n "$srv" addr add 192.0.2.2/24 dev eth0
ip -n "$srv" link set eth0 up
ip -n "$cli" link set eth0 up

sed 's|@HOOK@|/bin/true|' "$snippet" > "$work/hooks.conf"
cat > "$work/dhcpd.conf" <<CONF
authoritative;
default-lease-time 600;
max-lease-time 600;
ddns-update-style none;
include "$work/hooks.conf";
subnet 192.0.2.0 netmask 255.255.255.0 {
    range 192.0.2.100 192.0.2.199;
}
CONF
: > "$work/dhcpd.leases"
dhcpd -t -4 -cf "$work/dhcpd.conf" >/dev/null 2>&1
ip netns exec "$srv" dhcpd -4 -d -cf "$work/dhcpd.conf" -lf "$work/dhcpd.leases" \
    -pf "$work/dhcpd.pid" eth0 > "$work/dhcpd.log" 2>&1 &
pids="$pids $!"

cat > "$work/client.script" <<'SCRIPT'
#!/bin/sh
# dhclient -sf script: only the interface address, never resolv.conf or routes
case "$reason" in
    BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/24" dev "$interface" ;;
    EXPIRE|FAIL|RELEASE|STOP) [ -n "${old_ip_address:-}" ] && ip addr del "$old_ip_address/24" dev "$interface" || true ;;
esac
exit 0
SCRIPT
chmod +x "$work/client.script"
printf 'send host-name "client1";\n' > "$work/dhclient.conf"

run_client() {
    ip netns exec "$cli" dhclient -4 -d -cf "$work/dhclient.conf" -lf "$work/dhclient.leases" \
        -pf "$work/dhclient.pid" -sf "$work/client.script" eth0 >> "$work/dhclient.log" 2>&1 &
    cpid=$!
    pids="$pids $cpid"
    i=0
    until grep -q 'bound to' "$work/dhclient.log" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 100 ] || { echo "client did not bind" >&2; cat "$work/dhcpd.log" >&2; exit 1; }
        sleep 0.1
    done
}

run_client
kill -9 "$cpid"; sleep 0.3
ip netns exec "$cli" dhclient -4 -r -cf "$work/dhclient.conf" -lf "$work/dhclient.leases" \
    -pf "$work/dhclient.pid" -sf "$work/client.script" eth0 >> "$work/dhclient.log" 2>&1
sleep 0.5
: > "$work/dhclient.log"
run_client
kill -9 "$cpid"; sleep 0.5
cp "$work/dhcpd.leases" "$here/real-dhcpd-4.4.3.leases"
echo "wrote $here/real-dhcpd-4.4.3.leases"
rm -rf "$work"
