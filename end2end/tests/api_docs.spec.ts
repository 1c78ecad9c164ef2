import { expect, signIn, test } from "./server";

test("the API page shows every operation of the served OpenAPI document, filters them and opens examples", async ({ page, server }) => {
  await signIn(page);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "API" }).click();
  await expect(page).toHaveURL(/\/api-docs$/);
  await expect(page.getByRole("heading", { name: "API reference", exact: true })).toBeVisible();

  // The page lists what the server's own document lists, operation for operation.
  const doc = await (await fetch(`${server.url}/api/openapi.json`)).json();
  expect(doc.openapi).toBe("3.1.0");
  const documented = Object.values(doc.paths as Record<string, object>).reduce((n, item) => n + Object.keys(item).length, 0);
  await expect(page.locator("article.api-op")).toHaveCount(documented);

  const list = page.locator("article.api-op").filter({ has: page.getByRole("heading", { name: "Lists events, filtered and paged" }) });
  await expect(list.locator(".api-path")).toHaveText("/api/v1/events");
  await expect(list).toContainText("Needs read_own");
  await expect(list.getByRole("table")).toContainText("min_risk");

  // Typing narrows the list; the groups left empty disappear.
  await page.getByLabel("Filter").fill("tokens");
  await expect(list).toBeHidden();
  const visible = page.locator("article.api-op:visible .api-path");
  await expect(visible).toHaveText(["/api/v1/tokens", "/api/v1/tokens", "/api/v1/tokens/{name}"]);
  await expect(page.getByRole("heading", { name: "events", exact: true })).toBeHidden();

  // An answer's example opens in place.
  const create = page.locator("article.api-op").filter({ has: page.getByRole("heading", { name: "Makes an API token" }) });
  await create.locator(".api-answer").filter({ hasText: "201" }).getByText("Example").click();
  await expect(create.locator(".api-answer pre").first()).toContainText('"token"');

  // The document itself is one click away.
  await expect(page.getByRole("link", { name: "OpenAPI 3.1 document" })).toHaveAttribute("href", "/api/openapi.json");
});
