"""ordermesh processes: one package per process, each a thin shell around pure code in `ordermesh`."""
