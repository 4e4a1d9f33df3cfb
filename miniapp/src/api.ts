// The member API of the loyalty service (SPEC §4 "The member's page"). Every call carries the
// Zalo user access token; the API finds the member from it, so no call names a customer.

export interface Tier {
  code: string;
  name: string;
  name_vi?: string;
  threshold?: number;
}

export interface Offer {
  bonus_points: number;
  /** ISO 8601 with the shop's offset, e.g. 2026-11-26T13:20:00+07:00 */
  order_before: string;
}

export interface MemberView {
  customer_id: string;
  tier: Tier;
  points: number;
  total_spent: number;
  next_tier: Tier | null;
  points_to_next_tier: number | null;
  spend_to_next_tier: number | null;
  benefits: string[];
  next_tier_benefits: string[];
  offer?: Offer | null;
}

export interface LedgerEntry {
  kind: string;
  points: number;
  order_id: string | null;
  balance_after: number;
  created_at: string;
}

/** A refused or failed call; `status` is null when no answer came back at all. */
export class ApiError extends Error {
  constructor(readonly status: number | null) {
    super(status === null ? "no answer from the loyalty API" : `loyalty API answered ${status}`);
  }
}

const BASE_URL = import.meta.env.VITE_LOYALTY_API.replace(/\/+$/, "");

async function call(token: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { "X-Zalo-Access-Token": token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(BASE_URL + path, {
      method: body === undefined ? "GET" : "POST",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(null);
  }
  if (!response.ok) throw new ApiError(response.status);
  return response;
}

async function readJson<T>(response: Response): Promise<T> {
  try {
    return (await response.json()) as T;
  } catch {
    throw new ApiError(response.status);
  }
}

export async function fetchMember(token: string): Promise<MemberView> {
  return readJson<MemberView>(await call(token, "/v1/me"));
}

/** The member's points history, newest first (the API's order). */
export async function fetchLedger(token: string): Promise<LedgerEntry[]> {
  return (await readJson<{ entries: LedgerEntry[] }>(await call(token, "/v1/me/ledger"))).entries;
}

/** Link the member by the phone number Zalo holds for a `getPhoneNumber` token. */
export async function linkPhone(token: string, phoneToken: string): Promise<void> {
  await call(token, "/v1/me/phone", { token: phoneToken });
}
