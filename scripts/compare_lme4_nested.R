# Fit every dataset in a CSV (columns rep, y, x0..x{p-1}, cluster, group; group -1 = none)
# with lmerTest: y ~ 0 + x0 + ... + (1 | cluster) + (0 + in_group | group), REML,
# Satterthwaite df for x1 (the treatment column).
# Usage: Rscript scripts/compare_lme4_nested.R in.csv out.csv   (dev check, not a test dependency)
suppressPackageStartupMessages(library(lmerTest))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
xs <- grep("^x[0-9]+$", names(d), value = TRUE)
form <- as.formula(paste("y ~ 0 +", paste(xs, collapse = " + "),
                         "+ (1 | cluster) + (0 + in_group | group)"))
d$in_group <- as.numeric(d$group >= 0)
d$group <- factor(ifelse(d$group >= 0, d$group, -1))  # level -1: in_group = 0, no effect
d$cluster <- factor(d$cluster)
out <- do.call(rbind, lapply(split(d, d$rep), function(x) {
  x <- droplevels(x)
  fit <- lmer(form, data = x, REML = TRUE,
              control = lmerControl(check.conv.singular = "ignore",
                                    check.nlev.gtr.1 = "ignore"))
  co <- summary(fit)$coefficients
  vc <- as.data.frame(VarCorr(fit))
  data.frame(rep = x$rep[1], estimate = co["x1", "Estimate"], se = co["x1", "Std. Error"],
             df = co["x1", "df"],
             sigma2_cluster = vc$vcov[vc$grp == "cluster"],
             sigma2_group = vc$vcov[vc$grp == "group"],
             sigma2_residual = sigma(fit)^2,
             reml_loglik = as.numeric(logLik(fit)), singular = isSingular(fit))
}))
write.csv(out, args[2], row.names = FALSE)
