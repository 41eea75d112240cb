# lmerTest oracle for trialsim.analyse.lmm.fit_lmm: fits every dataset CSV written by
# scripts/compare_lmm.py (columns y, x0..x{p-1}, t_<term> ids with -1 = not in the term) with
#   lmer(y ~ 0 + x0 + ... + (0 + in_<term> | t_<term>) + ..., REML = <reml>,
#        control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5)))
# (in_<term> = t_<term> >= 0; the level -1 has no effect) and writes estimate, SE and
# Satterthwaite df of x1, the variance components and the REML criterion (deviance for ML).
# Usage: Rscript scripts/compare_lmm.R DIR   (reads DIR/*.csv, writes DIR/oracle.json)
# Dev check only: the tests hold the frozen numbers and do not need R.
suppressPackageStartupMessages({library(lmerTest); library(jsonlite)})
dir <- commandArgs(trailingOnly = TRUE)[1]
tight <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5),
                     check.conv.singular = "ignore", check.nlev.gtr.1 = "ignore")
out <- list(versions = list(R = R.version.string,
                            lme4 = as.character(packageVersion("lme4")),
                            lmerTest = as.character(packageVersion("lmerTest"))))
for (path in sort(Sys.glob(file.path(dir, "*.csv")))) {
  name <- sub("\\.csv$", "", basename(path))
  d <- read.csv(path)
  reml <- !grepl("_ml$", name)
  xs <- grep("^x[0-9]+$", names(d), value = TRUE)
  ts <- sub("^t_", "", grep("^t_", names(d), value = TRUE))
  re <- character(0)
  for (t in ts) {
    d[[paste0("in_", t)]] <- as.numeric(d[[paste0("t_", t)]] >= 0)
    d[[paste0("t_", t)]] <- factor(d[[paste0("t_", t)]])
    re <- c(re, sprintf("(0 + in_%s | t_%s)", t, t))
  }
  form <- as.formula(paste("y ~ 0 +", paste(xs, collapse = " + "), "+",
                           paste(re, collapse = " + ")))
  fit <- lmer(form, data = d, REML = reml, control = tight)
  co <- summary(fit)$coefficients
  vc <- as.data.frame(VarCorr(fit))
  variance <- setNames(as.list(vc$vcov[match(paste0("t_", ts), vc$grp)]), ts)
  out[[name]] <- list(
    call = paste(deparse(form, width.cutoff = 500), collapse = ""), reml = reml,
    estimate = co["x1", "Estimate"], se = co["x1", "Std. Error"], df = co["x1", "df"],
    sigma2_residual = sigma(fit)^2, variance = variance,
    criterion = if (reml) as.numeric(REMLcrit(fit)) else as.numeric(deviance(fit)),
    loglik = as.numeric(logLik(fit)), singular = isSingular(fit), nobs = nobs(fit))
}
write(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(dir, "oracle.json"))
