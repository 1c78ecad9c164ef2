import { expect, signIn, test, TOKEN } from "./server";

test("the header shows how far the hash chain is verified", async ({ page, server }) => {
  await server.post([{ action: "a.one" }, { action: "a.two" }, { action: "a.three" }]);
  // The background check runs a few seconds after a commit; wait for it through the API.
  await expect
    .poll(
      async () => {
        const r = await fetch(`${server.url}/api/v1/chain`, { headers: { Authorization: `Bearer ${TOKEN}` } });
        return (await r.json()).verifiedThrough;
      },
      { timeout: 20_000 },
    )
    .toBe(3);
  await signIn(page);
  const badge = page.getByTestId("chain-badge");
  await expect(badge).toContainText("Verified #3");
  await expect(badge).toHaveAttribute("title", /verified up to seq 3 at \d{4}-\d\d-\d\d/);
  await expect(badge).toHaveClass(/chain-ok/);
});
