import { expect, signIn, test, TOKEN } from "./server";

test("the header shows how far the hash chain is verified", async ({ page, server }) => {
  await server.post([{ action: "a.one" }, { action: "a.two" }, { action: "a.three" }]);
  // The background check runs a few seconds after a commit; wait for it through the API.
  const verifiedThrough = async () => {
    const r = await fetch(`${server.url}/api/v1/chain`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    return (await r.json()).verifiedThrough;
  };
  await expect.poll(verifiedThrough, { timeout: 20_000 }).toBe(3);
  await signIn(page);
  // The sign-in is recorded as seq 4; once the background check has covered it, a page
  // load shows it.
  await expect.poll(verifiedThrough, { timeout: 20_000 }).toBe(4);
  await page.reload();
  const badge = page.getByTestId("chain-badge");
  await expect(badge).toContainText("Verified #4");
  await expect(badge).toHaveAttribute("title", /verified up to seq 4 at \d{4}-\d\d-\d\d/);
  await expect(badge).toHaveClass(/chain-ok/);
});
