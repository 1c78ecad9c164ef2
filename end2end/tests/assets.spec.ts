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
