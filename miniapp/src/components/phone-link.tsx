import { useState } from "react";
import { Button } from "zmp-ui";

import { linkPhone } from "../api";
import { phoneProblemOf } from "../problems";
import { askForPhoneToken } from "../sign-in";

/** Lets a member whose orders carry their phone number (not their Zalo id) find them. */
export function PhoneLink({ token, onLinked }: { token: string; onLinked: () => void }) {
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<string | null>(null);

  async function link() {
    setBusy(true);
    setOutcome(null);
    try {
      await linkPhone(token, await askForPhoneToken());
      setOutcome("Đã liên kết số điện thoại.");
      onLinked();
    } catch (error) {
      setOutcome(phoneProblemOf(error));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="panel" aria-labelledby="phone-link">
      <h3 id="phone-link">Chưa thấy đơn hàng của bạn?</h3>
      <p className="muted">
        Liên kết số điện thoại bạn dùng khi đặt hàng để gộp điểm về tài khoản Zalo này.
      </p>
      <Button fullWidth variant="secondary" loading={busy} disabled={busy} onClick={link}>
        Liên kết số điện thoại
      </Button>
      {outcome && (
        <p className="phone-link__outcome" role="status">
          {outcome}
        </p>
      )}
    </section>
  );
}
