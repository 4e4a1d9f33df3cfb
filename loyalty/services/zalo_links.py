"""Which customer a signed-in Zalo user is (SPEC §4 "The member's page").

Zalo gives one person another id per app and per OA, so the app-scoped id a token verifies to
is linked to a customer in ``zalo_links``, never assumed equal to the OA user id the shop's
events carry. A link is made, in this order of trust:

1. by phone: the member shared their number (``getPhoneNumber``) and Zalo told it to us; the
   customer is the one whose phone is that number, once an order with it has arrived;
2. by OA user id: Zalo's Graph answer names the user's id for the shop's OA, and a customer
   carries it as ``zalo_user_id``.

Once a customer is found the link is kept, so later answers cannot move it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ScalarSelect, select, update
from sqlalchemy.orm import Session

from loyalty.storage.db import transaction
from loyalty.storage.queries import insert_if_absent
from loyalty.storage.tables import Customer, ZaloLink
from loyalty.zalo import mask_phone, normalise_phone, phone_spellings
from loyalty.zalo.graph import GraphRefused, ZaloIdentity

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty

log = logging.getLogger("loyalty.signin")


class PhoneRefused(Exception):
    """Zalo refused the phone code, or its number is not one we can use (HTTP 422)."""


def linked_to(zalo_id: str) -> ScalarSelect[str | None]:
    """The customer ``zalo_id`` is linked to, as a subquery (NULL while none is)."""
    return select(ZaloLink.customer_id).where(ZaloLink.zalo_id == zalo_id).scalar_subquery()


def linked_customer(session: Session, identity: ZaloIdentity, now: datetime) -> str | None:
    """The customer ``identity`` is, linked now if it can be; None while nobody is."""
    link = session.get(ZaloLink, identity.zalo_id)
    if link is not None and link.customer_id is not None:
        return link.customer_id
    found, linked_by = None, None
    if link is not None and link.phone is not None:
        found, linked_by = _customer_with_phone(session, link.phone), "phone"
    if found is None and identity.oa_user_id is not None:
        found, linked_by = _first_customer(session, Customer.zalo_user_id ==
                                           identity.oa_user_id), "oa_user_id"
    if found is None:
        return None
    _save(session, identity.zalo_id, now, customer_id=found, linked_by=linked_by)
    log.info("Zalo user linked", extra={"customer_id": found, "linked_by": linked_by})
    return found


def link_phone(loyalty: Loyalty, identity: ZaloIdentity, access_token: str, code: str) -> None:
    """Link ``identity`` by the number Zalo gives for ``code``, whether or not a customer has
    that number yet. ``GraphUnavailable`` passes through: nothing was decided."""
    try:
        number = loyalty.graph.phone_number(access_token, code)
    except GraphRefused as refused:
        raise PhoneRefused(f"Zalo refused the phone code ({refused.code})") from None
    try:
        phone = normalise_phone(number)
    except ValueError as error:
        raise PhoneRefused(str(error)) from None
    now = loyalty.clock()
    with transaction(loyalty.sessions) as session:
        customer_id = _customer_with_phone(session, phone)
        _save(session, identity.zalo_id, now, phone=phone, customer_id=customer_id,
              linked_by="phone")
    log.info("Zalo user linked by phone", extra={"phone": mask_phone(phone),
                                                  "customer_id": customer_id})


def _customer_with_phone(session: Session, phone: str) -> str | None:
    return _first_customer(session, Customer.phone.in_(phone_spellings(phone)))


def _first_customer(session: Session, condition: Any) -> str | None:
    # Two customers with one number or OA id are one person twice; the first one known wins,
    # the same one every time.
    return session.scalar(select(Customer.id).where(condition)
                          .order_by(Customer.created_at, Customer.id).limit(1))


def _save(session: Session, zalo_id: str, now: datetime, **values: Any) -> None:
    if insert_if_absent(session, ZaloLink, {"zalo_id": zalo_id, "created_at": now,
                                            "updated_at": now, **values}, ["zalo_id"]) is None:
        session.execute(update(ZaloLink).where(ZaloLink.zalo_id == zalo_id)
                        .values(updated_at=now, **values))
