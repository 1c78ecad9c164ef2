import * as http from "node:http";
import * as zlib from "node:zlib";
import { expect, signIn, test } from "./server";

// The release build writes brotli and gzip copies of the site (`--precompress`); the browser
// must be sent those rather than the raw files, 2 MB of them for the module alone.
test("the dashboard's module, script and styles arrive compressed", async ({ page }) => {
  const names = ["trailwatch.wasm", "trailwatch.js", "trailwatch.css"];
  const arriving = names.map((name) => page.waitForResponse((r) => r.url().endsWith(`/pkg/${name}`)));
  await signIn(page);
  for (const [i, pending] of arriving.entries()) {
    const response = await pending;
    expect(response.status(), names[i]).toBe(200);
    expect(await response.headerValue("content-encoding"), names[i]).toBe("br");
    const sent = (await response.request().sizes()).responseBodySize;
    const size = (await response.body()).length;
    expect(sent, `${names[i]}: ${sent} bytes sent for ${size}`).toBeLessThan(size / 2);
  }
});

// Clients without brotli get the gzip copies, which `.ci/regzip` writes at gzip's best level:
// each inflates to the file itself and is within 5% of zlib's level 9 (gzip's deflate and
// zlib's differ by a percent or two; cargo-leptos's fast copies were 14-17% larger).
test("the gzip copies are the files themselves, compressed at the best level", async ({ baseURL }) => {
  const get = (path: string, encoding: string) =>
    new Promise<{ encoding?: string; body: Buffer }>((resolve, reject) => {
      http
        .get(new URL(path, baseURL), { headers: { "Accept-Encoding": encoding } }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({ encoding: res.headers["content-encoding"], body: Buffer.concat(chunks) }),
          );
        })
        .on("error", reject);
    });
  for (const name of ["trailwatch.wasm", "trailwatch.js", "trailwatch.css"]) {
    const raw = await get(`/pkg/${name}`, "identity");
    const gz = await get(`/pkg/${name}`, "gzip");
    expect(raw.encoding, name).toBeUndefined();
    expect(gz.encoding, name).toBe("gzip");
    expect(zlib.gunzipSync(gz.body).equals(raw.body), `${name} inflates to itself`).toBe(true);
    const best = zlib.gzipSync(raw.body, { level: 9 }).length;
    expect(gz.body.length, `${name}: ${gz.body.length} bytes against ${best} at level 9`).toBeLessThanOrEqual(
      best * 1.05,
    );
  }
});
