import { getAccessToken, getPhoneNumber } from "zmp-sdk";

export interface SignIn {
  token: string;
  /** The token came from Zalo itself, so Zalo's other APIs (the phone number) work too. */
  insideZalo: boolean;
}

// Only a development build (vite --mode development, for a desktop browser and the tests) may
// take tokens from the page's URL. Vite replaces import.meta.env.MODE with a string literal,
// so in a production build these branches are dead code and the minifier drops them: nothing
// shipped to Zalo reads a token from a link someone was sent.

/** The Zalo user access token of whoever opened the page, or null when there is none. */
export async function signIn(): Promise<SignIn | null> {
  if (import.meta.env.MODE === "development") {
    const fromUrl = new URLSearchParams(window.location.search).get("access_token");
    if (fromUrl) return { token: fromUrl, insideZalo: false };
  }
  try {
    const token = await getAccessToken();
    return token ? { token, insideZalo: true } : null;
  } catch {
    // Outside Zalo, zmp-sdk refuses: there is nobody to sign in.
    return null;
  }
}

/** Whether this page can ask for the member's phone number at all. */
export function canAskForPhone(signIn: SignIn): boolean {
  if (import.meta.env.MODE === "development") {
    if (new URLSearchParams(window.location.search).has("phone_token")) return true;
  }
  return signIn.insideZalo;
}

/** A `getPhoneNumber` token, for the API to exchange at Zalo; rejects if the member declines. */
export async function askForPhoneToken(): Promise<string> {
  if (import.meta.env.MODE === "development") {
    const fromUrl = new URLSearchParams(window.location.search).get("phone_token");
    if (fromUrl) return fromUrl;
  }
  const { token } = await getPhoneNumber();
  if (!token) throw new Error("Zalo gave no phone number token");
  return token;
}
