# soakd's first_content_ms against a loopback capture (scripts/wire-timing runs it): for each
# request, in start order, the time on the wire from its POST to the first server packet that
# carries a non-empty "content" delta, and soakd's own figure for it. Requests are paired in
# start order: exact at concurrency 1, close at higher concurrency when the server's delays are
# even. Reads a pcap (microsecond or nanosecond) of Ethernet/loopback/cooked frames, IPv4 TCP.
#
#   python3 analyze.py CAPTURE.pcap SOAKD.db SERVER_PORT
import struct, sqlite3, sys, statistics
pcap, db = sys.argv[1], sys.argv[2]
data = open(pcap, 'rb').read()
magic = struct.unpack('<I', data[:4])[0]
nano = magic == 0xa1b23c4d
linktype = struct.unpack('<I', data[20:24])[0]
off = 24
conns = {}  # client port -> list of (t, direction, payload)
while off + 16 <= len(data):
    ts, tfrac, incl, orig = struct.unpack('<IIII', data[off:off+16]); off += 16
    pkt = data[off:off+incl]; off += incl
    t = ts + tfrac / (1e9 if nano else 1e6)
    if linktype == 1: ip = pkt[14:]
    elif linktype == 113: ip = pkt[16:]
    elif linktype == 276: ip = pkt[20:]
    else: ip = pkt[4:]
    if len(ip) < 20 or ip[0] >> 4 != 4: continue
    ihl = (ip[0] & 15) * 4
    if ip[9] != 6: continue
    tcp = ip[ihl:]
    sport, dport = struct.unpack('>HH', tcp[:4])
    doff = (tcp[12] >> 4) * 4
    payload = tcp[doff:]
    if not payload: continue
    server = int(sys.argv[3])
    if dport == server: conns.setdefault(sport, []).append((t, 'c', payload))
    elif sport == server: conns.setdefault(dport, []).append((t, 's', payload))
reqs = []
for port, pkts in conns.items():
    cur = None
    for t, d, p in pkts:
        if d == 'c' and p.startswith(b'POST'):
            cur = [t, None]; reqs.append(cur)
        elif d == 's' and cur is not None and cur[1] is None and b'"content":"' in p:
            # a non-empty content delta
            i = p.find(b'"content":"') + 11
            if p[i:i+1] != b'"': cur[1] = t
reqs.sort()
c = sqlite3.connect(db)
rows = c.execute("select first_content_ms from requests where outcome='ok' order by started_at, id").fetchall()
wire = [(b - a) * 1000 for a, b in reqs if b is not None]
n = min(len(wire), len(rows))
# match in start order (c=1: exact); report the error distribution
signed = [rows[i][0] - wire[i] for i in range(n) if rows[i][0] is not None]
errs = sorted(abs(rows[i][0] - wire[i]) for i in range(n) if rows[i][0] is not None)
def q(p): return errs[min(len(errs)-1, int(p*len(errs)))]
print(f"signed mean {statistics.mean(signed):.3f} ms; ", end="")
print(f"requests {n}: |soakd first_content_ms - wire| p50 {q(0.5):.3f} ms, p95 {q(0.95):.3f} ms, max {errs[-1]:.3f} ms; wire first content p50 {statistics.median(wire):.3f} ms")
