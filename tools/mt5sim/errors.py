"""The EA's error and retcode texts, copied from its source.

``DESCRIPTIONS`` is ControlErrors' table (Include/controlerrors.mqh: ``ControlErrors::ControlErrors``), which
``ControlErrors::mGetDesc`` searches for the ``description`` of an ``ActionDoneOrError`` message; ``USER_ERRORS`` is
``GetErrorID`` and ``RETCODE_IDS`` is ``GetRetcodeID`` (Experts/JsonAPI.mq5).
"""

from __future__ import annotations

ERR_USER_ERROR_FIRST = 65536

DESCRIPTIONS: dict[int, str] = {
    10004: "Requote", 10006: "Request rejected", 10007: "Request canceled by trader", 10008: "Order placed",
    10009: "Request is completed", 10010: "Request is partially completed", 10011: "Request processing error",
    10012: "Request canceled by timeout", 10013: "Invalid request", 10014: "Invalid volume in the request",
    10015: "Invalid price in the request", 10016: "Invalid stops in the request", 10017: "Trade is disabled",
    10018: "Market is closed", 10019: "There is not enough money to fulfill the request", 10020: "Prices changed",
    10021: "There are no quotes to process the request", 10022: "Invalid order expiration date in the request",
    10023: "Order state changed", 10024: "Too frequent requests", 10025: "No changes in request",
    10026: "Autotrading disabled by server", 10027: "Autotrading disabled by client terminal",
    10028: "Request locked for processing", 10029: "Order or position frozen", 10030: "Invalid order filling type",
    4001: "Unexpected internal error", 4002: "Wrong parameter in the inner call of the client terminal function",
    4003: "Wrong parameter when calling the system function",
    4004: "Not enough memory to perform the system function",
    4005: "The structure contains objects of strings and/or dynamic arrays and/or structure of such objects and/or "
    "classes",
    4006: "Array of a wrong type, wrong size, or a damaged object of a dynamic array",
    4007: "Not enough memory for the relocation of an array, or an attempt to change the size of a static array",
    4008: "Not enough memory for the relocation of string", 4009: "Not initialized string",
    4010: "Invalid date and/or time", 4011: "Requested array size exceeds 2 GB", 4012: "Wrong pointer",
    4013: "Wrong type of pointer", 4014: "System function is not allowed to call", 4101: "Wrong chart ID",
    4102: "Chart does not respond", 4103: "Chart not found",
    4104: "No Expert Advisor in the chart that could handle the event", 4105: "Chart opening error",
    4106: "Failed to change chart symbol and period", 4107: "Wrong parameter for timer",
    4108: "Failed to create timer", 4109: "Wrong chart property ID", 4110: "Error creating screenshots",
    4111: "Error navigating through chart", 4112: "Error applying template",
    4113: "Subwindow containing the indicator was not found", 4201: "Error working with a graphical object",
    4202: "Graphical object was not found", 4203: "Wrong ID of a graphical object property",
    4204: "Unable to get date corresponding to the value", 4205: "Unable to get value corresponding to the date",
    4301: "Unknown symbol", 4302: "Symbol is not selected in MarketWatch",
    4303: "Wrong identifier of a symbol property", 4304: "Time of the last tick is not known (no ticks)",
    4401: "Requested history not found", 4402: "Wrong ID of the history property",
    4501: "Global variable of the client terminal is not found",
    4502: "Global variable of the client terminal with the same name already exists", 4510: "Email sending failed",
    4511: "Sound playing failed", 4512: "Wrong identifier of the program property",
    4513: "Wrong identifier of the terminal property", 4514: "File sending via ftp failed",
    4601: "Not enough memory for the distribution of indicator buffers", 4602: "Wrong indicator buffer index",
    4603: "Wrong ID of the custom indicator property", 4701: "Wrong account property ID",
    4751: "Wrong trade property ID;", 4752: "Trading by Expert Advisors prohibited", 4753: "Position not found",
    4754: "Order not found", 4755: "Deal not found", 4756: "Trade request sending failed",
    4757: "Timeout exceeded when selecting (searching) specified data", 4801: "Unknown symbol",
    4802: "Indicator cannot be created", 4803: "Not enough memory to add the indicator",
    4804: "The indicator cannot be applied to another indicator", 4805: "Error applying an indicator to chart",
    4806: "Requested data not found", 4807: "Wrong index of the requested indicator buffer",
    4808: "Wrong number of parameters when creating an indicator", 4809: "No parameters when creating an indicator",
    4810: "The first parameter in the array must be the name of the custom indicator",
    4811: "Invalid parameter type in the array when creating an indicator", 4901: "Depth Of Market can not be added",
    4902: "Depth Of Market can not be removed", 4903: "The data from Depth Of Market can not be obtained",
    4904: "Error in subscribing to receive new data from Depth Of Market",
    5001: "More than 64 files cannot be opened at the same time", 5002: "Invalid file name",
    5003: "Too long file name", 5004: "File opening error", 5005: "Not enough memory for cache to read",
    5006: "File deleting error", 5007: "A file with this handle was closed, or was not opened at all",
    5008: "Wrong file handle", 5009: "The file must be opened for writing",
    5010: "The file must be opened for reading", 5011: "The file must be opened as a binary one",
    5012: "The file must be opened as a text", 5013: "The file must be opened as a text or CSV",
    5014: "The file must be opened as CSV", 5015: "File reading error",
    5016: "String size must be specified, because the file is opened as binary",
    5017: "A text file must be for string arrays, for other arrays - binary",
    5018: "This is not a file, this is a directory", 5019: "File does not exist", 5020: "File can not be rewritten",
    5021: "Wrong directory name", 5022: "Directory does not exist", 5023: "This is a file, not a directory",
    5024: "The directory cannot be removed", 5030: "No date in the string", 5031: "Wrong date in the string",
    5032: "Wrong time in the string", 5033: "Error converting string to date",
    5034: "Not enough memory for the string", 5035: "The string length is less than expected",
    5036: "Too large number, more than ULONG_MAX", 5037: "Invalid format string",
    5038: "Amount of format specifiers more than the parameters",
    5039: "Amount of parameters more than the format specifiers", 5040: "Damaged parameter of string type",
    5041: "Position outside the string", 5042: "0 added to the string end, a useless operation",
    5043: "Unknown data type when converting to a string", 5044: "Damaged string object",
    5050: "Copying incompatible arrays. String array can be copied only to a string array, and a numeric array - "
    "in numeric array only",
    5051: "The receiving array is declared as AS_SERIES, and it is of insufficient size",
    5052: "Too small array, the starting position is outside the array", 5053: "An array of zero length",
    5054: "Must be a numeric array", 5055: "Must be a one-dimensional array", 5056: "Timeseries cannot be used",
    5057: "Must be an array of type double", 5058: "Must be an array of type float",
    5059: "Must be an array of type long", 5060: "Must be an array of type int",
    5061: "Must be an array of type short", 5062: "Must be an array of type char",
}  # fmt: skip

USER_ERRORS: dict[int, str] = {
    65537: "ERR_DESERIALIZATION", 65538: "ERR_WRONG_ACTION", 65539: "ERR_WRONG_ACTION_TYPE",
    65540: "ERR_CLEAR_SUBSCRIPTIONS_FAILED", 65541: "ERR_RETRIEVE_DATA_FAILED", 65542: "ERR_CVS_FILE_CREATION_FAILED",
}  # fmt: skip

RETCODE_IDS: dict[int, str] = {
    10004: "TRADE_RETCODE_REQUOTE", 10006: "TRADE_RETCODE_REJECT", 10007: "TRADE_RETCODE_CANCEL",
    10008: "TRADE_RETCODE_PLACED", 10009: "TRADE_RETCODE_DONE", 10010: "TRADE_RETCODE_DONE_PARTIAL",
    10011: "TRADE_RETCODE_ERROR", 10012: "TRADE_RETCODE_TIMEOUT", 10013: "TRADE_RETCODE_INVALID",
    10014: "TRADE_RETCODE_INVALID_VOLUME", 10015: "TRADE_RETCODE_INVALID_PRICE",
    10016: "TRADE_RETCODE_INVALID_STOPS", 10017: "TRADE_RETCODE_TRADE_DISABLED",
    10018: "TRADE_RETCODE_MARKET_CLOSED", 10019: "TRADE_RETCODE_NO_MONEY", 10020: "TRADE_RETCODE_PRICE_CHANGED",
    10021: "TRADE_RETCODE_PRICE_OFF", 10022: "TRADE_RETCODE_INVALID_EXPIRATION",
    10023: "TRADE_RETCODE_ORDER_CHANGED", 10024: "TRADE_RETCODE_TOO_MANY_REQUESTS",
    10025: "TRADE_RETCODE_NO_CHANGES", 10026: "TRADE_RETCODE_SERVER_DISABLES_AT",
    10027: "TRADE_RETCODE_CLIENT_DISABLES_AT", 10028: "TRADE_RETCODE_LOCKED", 10029: "TRADE_RETCODE_FROZEN",
    10030: "TRADE_RETCODE_INVALID_FILL", 10031: "TRADE_RETCODE_CONNECTION", 10032: "TRADE_RETCODE_ONLY_REAL",
    10033: "TRADE_RETCODE_LIMIT_ORDERS", 10034: "TRADE_RETCODE_LIMIT_VOLUME", 10035: "TRADE_RETCODE_INVALID_ORDER",
    10036: "TRADE_RETCODE_POSITION_CLOSED", 10038: "TRADE_RETCODE_INVALID_CLOSE_VOLUME",
    10039: "TRADE_RETCODE_CLOSE_ORDER_EXIST", 10040: "TRADE_RETCODE_LIMIT_POSITIONS",
    10041: "TRADE_RETCODE_REJECT_CANCEL", 10042: "TRADE_RETCODE_LONG_ONLY", 10043: "TRADE_RETCODE_SHORT_ONLY",
    10044: "TRADE_RETCODE_CLOSE_ONLY",
}  # fmt: skip


def retcode_id(retcode: int) -> str:
    """``GetRetcodeID``: 10005 and 10037 are missing from the EA's switch, as is 0 (a request CTrade never sent)."""
    return RETCODE_IDS.get(retcode, f"TRADE_RETCODE_UNKNOWN={retcode}")


def error_desc(code: int) -> str:
    """``ControlErrors::mGetDesc``: the table for terminal errors, the user text (``GetErrorID``) for user errors."""
    if 0 < code < ERR_USER_ERROR_FIRST:
        text = DESCRIPTIONS.get(code, "")
    elif code > ERR_USER_ERROR_FIRST:
        text = USER_ERRORS.get(code, "Custom error")
    else:
        text = ""
    return text or f"Unknown error code: {code}"
