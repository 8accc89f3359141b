"""Money as integers in minor units, with ISO 4217 currencies and their exponents."""

from __future__ import annotations

# Active ISO 4217 codes by minor-unit exponent (ISO 4217 list one). Text reads best here.
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
    "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR "
    "LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD "
    "PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN "
    "SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW ZWG"
).split()
_ZERO = ("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF").split()
_THREE = "BHD IQD JOD KWD LYD OMR TND".split()
_EXPONENTS = {**dict.fromkeys(_TWO, 2), **dict.fromkeys(_ZERO, 0), **dict.fromkeys(_THREE, 3)}

# A sanity ceiling, not a business limit: no card payment here moves more than this.
MAX_MINOR_UNITS = 10**11


def currency_exponent(code: str) -> int | None:
    """Minor-unit digits of an ISO 4217 code, or None for a code that is not one."""
    return _EXPONENTS.get(code)


def check_money(amount: object, currency: object) -> str | None:
    """None when `amount` (minor units) and `currency` make a payable sum, else why not."""
    if not isinstance(currency, str) or currency_exponent(currency) is None:
        return "currency must be an ISO 4217 code such as GBP, EUR or USD"
    if isinstance(amount, bool) or not isinstance(amount, int):
        return "amount must be an integer number of minor units (pence, cents)"
    if amount <= 0:
        return "amount must be greater than zero"
    if amount > MAX_MINOR_UNITS:
        return "amount is larger than any card payment"
    return None
