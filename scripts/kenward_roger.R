# Kenward-Roger oracle (pbkrtest, lmerTest) for trialsim's REML engines.
#
# For every REML dataset CSV that scripts/compare_lmm.py writes (columns y, x0..x{p-1},
# t_<term> ids, -1 = not in the term) and for two real trials in tests/data/real, fits
#   fit <- lmer(<call>, REML = TRUE, control = lmerControl(optimizer = "bobyqa",
#               optCtrl = list(rhoend = 1e-12, maxfun = 1e5)))
# and records, for each named coefficient,
#   pbkrtest::vcovAdj(fit)          the Kenward-Roger adjusted covariance (its SE),
#   pbkrtest::get_Lb_ddf(fit, L)    the Kenward-Roger df of that coefficient,
#   summary(fit, ddf = "Kenward-Roger")$coefficients   lmerTest's SE and df (the same),
#   summary(fit, ddf = "Satterthwaite")$coefficients   for comparison.
# Usage: PYTHONPATH=. python scripts/compare_lmm.py DIR   (writes DIR/*.csv)
#        Rscript scripts/kenward_roger.R DIR tests/data/real tests/data/kenward_roger.json
# Dev check only: the tests read the frozen JSON and do not need R.
suppressPackageStartupMessages({library(lmerTest); library(pbkrtest); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
sim_dir <- args[1]; real_dir <- args[2]; out_file <- args[3]
tight <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5),
                     check.conv.singular = "ignore", check.nlev.gtr.1 = "ignore")
num <- function(x) unname(as.numeric(x))

kr_numbers <- function(call, fit, coefs) {
  V <- as.matrix(vcovAdj(fit))
  kr <- summary(fit, ddf = "Kenward-Roger")$coefficients
  sat <- summary(fit, ddf = "Satterthwaite")$coefficients
  terms <- lapply(coefs, function(k) {
    L <- matrix(as.numeric(names(fixef(fit)) == k), nrow = 1)
    list(estimate = num(fixef(fit)[k]), se_kr = sqrt(num(V[k, k])),
         df_kr = num(get_Lb_ddf(fit, L)),
         se_lmertest_kr = num(kr[k, "Std. Error"]), df_lmertest_kr = num(kr[k, "df"]),
         se_satterthwaite = num(sat[k, "Std. Error"]), df_satterthwaite = num(sat[k, "df"]))
  })
  vc <- as.data.frame(VarCorr(fit))
  list(call = call, terms = setNames(terms, coefs),
       variance = setNames(as.list(vc$vcov), vc$grp), singular = isSingular(fit),
       reml_criterion = num(REMLcrit(fit)))
}

out <- list(
  generated_by = "scripts/kenward_roger.R",
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  lmerTest = as.character(packageVersion("lmerTest")),
                  pbkrtest = as.character(packageVersion("pbkrtest")),
                  Matrix = as.character(packageVersion("Matrix"))),
  control = "lmerControl(optimizer = 'bobyqa', optCtrl = list(rhoend = 1e-12, maxfun = 1e5))",
  simulated = list(), real = list())

for (path in sort(Sys.glob(file.path(sim_dir, "*.csv")))) {
  name <- sub("\\.csv$", "", basename(path))
  if (grepl("_ml$", name)) next  # Kenward-Roger is defined for REML fits
  d <- read.csv(path)
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
  fit <- lmer(form, data = d, REML = TRUE, control = tight)
  out$simulated[[name]] <- kr_numbers(paste(deparse(form, width.cutoff = 500), collapse = ""),
                                      fit, c("x1", "x2"))
}

st <- read.csv(file.path(real_dir, "star.csv"), colClasses = c(participant = "character"))
st$arm <- factor(st$arm, levels = c("reg", "small", "reg+A"))
st$school <- factor(st$school)
st$class <- factor(st$class)
call <- "lmer(math ~ arm + factor(school) + (1 | class), data = st, REML = TRUE)"
out$real$star_three_arm <- kr_numbers(call, lmer(math ~ arm + factor(school) + (1 | class),
                                                 data = st, REML = TRUE, control = tight),
                                      c("armsmall", "armreg+A"))

bt <- read.csv(file.path(real_dir, "btheb.csv"), check.names = FALSE)
bt$treatment <- factor(bt$treatment, levels = c("TAU", "BtheB"))
bt$drug <- factor(bt$drug, levels = c("No", "Yes"))
bt$length <- factor(bt$length, levels = c("<6m", ">6m"))
bt_long <- do.call(rbind, lapply(c(2, 3, 5, 8), function(m)
  data.frame(participant = bt$participant, drug = bt$drug, length = bt$length,
             treatment = bt$treatment, bdi.pre = bt$bdi.pre, month = m,
             bdi = bt[[paste0("bdi.", m, "m")]])))
bt_long <- bt_long[!is.na(bt_long$bdi), ]
bt_long$participant <- factor(bt_long$participant)
call <- paste("lmer(bdi ~ bdi.pre + factor(month) + treatment + drug + length +",
              "(1 | participant), data = bt_long, REML = TRUE)  # months 2, 3, 5, 8; NA dropped")
out$real$btheb_long <- kr_numbers(
  call, lmer(bdi ~ bdi.pre + factor(month) + treatment + drug + length + (1 | participant),
             data = bt_long, REML = TRUE, control = tight), c("treatmentBtheB", "bdi.pre"))

writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), out_file)
cat("wrote", out_file, "\n")
