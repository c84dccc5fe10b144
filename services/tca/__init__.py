"""ordermesh tca: transaction cost analysis over the fill history."""
