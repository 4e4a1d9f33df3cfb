import { useCallback, useEffect, useState } from "react";
import { Button, Header, Page, Spinner } from "zmp-ui";

import { fetchLedger, fetchMember, type LedgerEntry, type MemberView } from "../api";
import { Benefits } from "../components/benefits";
import { OfferBanner } from "../components/offer";
import { PhoneLink } from "../components/phone-link";
import { PointsHistory } from "../components/points-history";
import { TierCard } from "../components/tier-card";
import { NOT_IN_ZALO, type Problem, problemOf } from "../problems";
import { canAskForPhone, type SignIn, signIn } from "../sign-in";

type State =
  | { kind: "loading" }
  | { kind: "problem"; problem: Problem }
  | { kind: "ready"; session: SignIn; member: MemberView; ledger: LedgerEntry[] };

export function MembershipPage() {
  const [state, setState] = useState<State>({ kind: "loading" });

  // A refresh (after linking a phone number) keeps the page on screen while it reloads.
  const load = useCallback(async (refresh = false) => {
    if (!refresh) setState({ kind: "loading" });
    // A fresh token on every try: Zalo may have renewed it since.
    const session = await signIn();
    if (session === null) {
      setState({ kind: "problem", problem: NOT_IN_ZALO });
      return;
    }
    try {
      const [member, ledger] = await Promise.all([
        fetchMember(session.token),
        fetchLedger(session.token),
      ]);
      setState({ kind: "ready", session, member, ledger });
    } catch (error) {
      setState({ kind: "problem", problem: problemOf(error) });
    }
  }, []);

  useEffect(() => {
    void load();
  }, [load]);

  return (
    <Page className="membership">
      <Header title="Hạng thành viên" showBackIcon={false} />
      <main className="membership__body">
        <h1 className="visually-hidden">Hạng thành viên</h1>
        {state.kind === "loading" && (
          <div className="centered" aria-busy="true">
            <Spinner visible />
            <p className="muted">Đang tải thông tin hạng thành viên…</p>
          </div>
        )}
        {state.kind === "problem" && (
          <div className="centered problem">
            <p role="alert">{state.problem.message}</p>
            {state.problem.retry && (
              <Button variant="primary" onClick={() => void load()}>
                Thử lại
              </Button>
            )}
          </div>
        )}
        {state.kind === "ready" && (
          <>
            <TierCard member={state.member} />
            <OfferBanner offer={state.member.offer} />
            <Benefits member={state.member} />
            <PointsHistory entries={state.ledger} />
            {canAskForPhone(state.session) && (
              <PhoneLink token={state.session.token} onLinked={() => void load(true)} />
            )}
          </>
        )}
      </main>
    </Page>
  );
}
