-- wrk script: POST a SHA-256 digest to the sign endpoint of the bench tenant.
-- KEYCTL_TOKEN and BENCH_TENANT come from the environment (bench/http_bench.sh).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEYCTL_TOKEN")
wrk.path = "/api/v1/tenants/" .. os.getenv("BENCH_TENANT") .. "/sign"
wrk.body = '{"digest":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}'
