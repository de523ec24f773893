// The server's alert rules over REST: GET /v1/rules, PUT/PATCH/DELETE /v1/rules/{name}.
//
// Requests carry the page's access cookie like every other call it makes. Every failure becomes a
// RulesError whose message is a sentence for the user: the server's own words where it gave some
// (a 422 names the field that is wrong), else what the status means and what to do.

const TIMEOUT_MS = 10_000;

/**
 * @typedef {{
 *   name: string, cameras: string[], question?: string | null, match?: string | null,
 *   k?: number, cooldown_s?: number, enabled?: boolean,
 *   states?: Record<string, "triggered" | "clear">,
 * }} Rule
 */

/** A refused or failed rules request; `status` is the HTTP status (0: no answer at all). */
export class RulesError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export class RulesApi {
  constructor(base = "/v1/rules") {
    this.base = base;
  }

  /** @returns {Promise<Rule[]>} */
  async list() {
    const body = await this.#request("GET", this.base, undefined, "read the alert rules");
    return Array.isArray(body?.rules) ? body.rules : [];
  }

  /** Create the rule, or replace the one of the same name. @returns {Promise<Rule>} */
  put(name, rule) {
    return this.#request("PUT", this.#url(name), rule, `save the rule "${name}"`);
  }

  /** @returns {Promise<Rule>} */
  setEnabled(name, enabled) {
    const what = `${enabled ? "enable" : "disable"} the rule "${name}"`;
    return this.#request("PATCH", this.#url(name), { enabled }, what);
  }

  remove(name) {
    return this.#request("DELETE", this.#url(name), undefined, `remove the rule "${name}"`);
  }

  #url(name) {
    return `${this.base}/${encodeURIComponent(name)}`;
  }

  async #request(method, url, body, what) {
    let response;
    try {
      response = await fetch(url, {
        method,
        cache: "no-store",
        headers: body === undefined ? {} : { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (error) {
      const why = error?.name === "TimeoutError" ? "it did not answer in time" : "it is not answering";
      throw new RulesError(`Could not ${what}: ${why}. Is \`camcap serve\` still running?`, 0);
    }
    if (response.status === 204) return null;
    const json = await response.json().catch(() => null);
    if (response.ok) return json;
    throw new RulesError(describeFailure(response.status, json, what), response.status);
  }
}

/** A sentence for a refused request: the server's detail where it gave one. */
export function describeFailure(status, json, what) {
  const detail = detailText(json);
  if (status === 401 || status === 403) {
    return `Not allowed to ${what} (HTTP ${status}): ${detail || "this page has no access; open the URL that `camcap serve` printed."}`;
  }
  if (status === 404 && json?.code !== "unknown_rule") {
    // The route itself is missing: a server from before alerts.
    return `Could not ${what}: this camcap server has no alert rules (HTTP 404). Update camcap on the server.`;
  }
  if (status === 404) return `Could not ${what}: ${detail || "there is no rule of that name (removed elsewhere?)."}`;
  if (status === 422 || status === 400) return `Could not ${what}: ${detail || "the server refused the rule as written."}`;
  return `Could not ${what} (HTTP ${status})${detail ? `: ${detail}` : "."}`;
}

/** camcap's `{"code", "detail": "..."}`, or FastAPI's 422 `{"detail": [{"loc", "msg"}]}`. */
function detailText(json) {
  const detail = json?.detail ?? json?.message ?? json?.error?.message;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((problem) => {
        const where = (problem?.loc ?? []).filter((part) => part !== "body").join(".");
        return where ? `${where}: ${problem?.msg}` : String(problem?.msg ?? "");
      })
      .filter(Boolean)
      .join("; ");
  }
  return "";
}
