"""moto's CPU cost per S3 request type (prints figures; not a test).

Why bench/bucket.sh's builtin-engine target is out of reach against moto:
moto spends about as much CPU on a GetObjectTagging or PutObjectTagging as
on a GET, so a scanner that GETs and tags (three requests per object with
the tag re-read before merging, two without) can reach at most a third (a
half) of the plain GET rate while moto is the bottleneck.

    ~/.cache/moat-test-venv/bin/python bench/moto_cost.py   # MOTO_SERVER=path
"""
import boto3, os, subprocess, sys, time, socket
from botocore.config import Config
port = 0
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen([os.environ.get("MOTO_SERVER", os.path.expanduser("~/.cache/moat-test-venv/bin/moto_server")), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", port)).close(); break
    except OSError: time.sleep(0.1)
try:
    c = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1", config=Config(max_pool_connections=4))
    c.create_bucket(Bucket="bench-b")
    N = 300
    for size in (1024, 100_000, 1_000_000):
        for i in range(N):
            c.put_object(Bucket="bench-b", Key=f"k{size}-{i}", Body=b"x" * size)
    def cpu():
        f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    def measure(label, fn):
        t0, w0 = cpu(), time.time()
        for i in range(N): fn(i)
        t1, w1 = cpu(), time.time()
        print(f"{label:40s} moto CPU {1000 * (t1 - t0) / N:6.2f} ms/request, wall {1000 * (w1 - w0) / N:6.2f} ms")
    for size in (1024, 100_000, 1_000_000):
        measure(f"GetObject {size} B", lambda i: c.get_object(Bucket="bench-b", Key=f"k{size}-{i}")["Body"].read())
    measure("GetObjectTagging", lambda i: c.get_object_tagging(Bucket="bench-b", Key=f"k1024-{i}"))
    measure("PutObjectTagging (5 tags)", lambda i: c.put_object_tagging(Bucket="bench-b", Key=f"k1024-{i}", Tagging={"TagSet": [{"Key": f"moat-{j}", "Value": "clean"} for j in range(5)]}))
    measure("GetObjectTagging (5 tags)", lambda i: c.get_object_tagging(Bucket="bench-b", Key=f"k1024-{i}"))
    measure("HeadObject", lambda i: c.head_object(Bucket="bench-b", Key=f"k1024-{i}"))
finally:
    p.kill()
