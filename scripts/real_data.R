# Export three small public real-trial data sets to tests/data/real/ and freeze R reference
# numbers (stats::lm, lme4::lmer with lmerTest Satterthwaite df) in tests/data/real/oracles.json.
# Usage, from the repository root:  Rscript scripts/real_data.R [outdir]   (default tests/data/real)
# Needs R with HSAUR3, MASS, mlmRev, lme4, lmerTest and jsonlite (Debian: r-cran-hsaur3 r-cran-mass
# r-cran-mlmrev r-cran-lme4 r-cran-lmertest r-cran-jsonlite). Dev tool, not a test dependency.
suppressPackageStartupMessages({
  library(lmerTest)  # attaches lme4; lmer() below is lmerTest::lmer (Satterthwaite df)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args) >= 1) args[1] else file.path("tests", "data", "real")
dir.create(outdir, recursive = TRUE, showWarnings = FALSE)

write_plain_csv <- function(d, name) {
  # factors as their labels, missing as empty cells, no quoting (checked: no commas or quotes)
  chr <- vapply(d, function(x) is.factor(x) || is.character(x), logical(1))
  for (v in names(d)[chr]) stopifnot(!any(grepl("[,\"]", as.character(d[[v]])), na.rm = TRUE))
  write.csv(d, file.path(outdir, name), row.names = FALSE, na = "", quote = FALSE)
}

## 1. BtheB (HSAUR3): Beat the Blues, individually randomised, wide repeated measures ----------
data("BtheB", package = "HSAUR3")
btheb_out <- data.frame(participant = seq_len(nrow(BtheB)), BtheB, check.names = FALSE)
write_plain_csv(btheb_out, "btheb.csv")

## 2. anorexia (MASS): three arms, pre/post weight (lb) ------------------------------------------
data("anorexia", package = "MASS")
anorexia_out <- data.frame(participant = seq_len(nrow(anorexia)),
                           treat = anorexia$Treat,
                           weight_pre = anorexia$Prewt,
                           weight_post = anorexia$Postwt)
write_plain_csv(anorexia_out, "anorexia.csv")

## 3. star (mlmRev): Tennessee STAR, kindergarten, first 24 schools with all three class types ----
# class identifier: mlmRev::star has no `cl` column; `tch` (teacher id) identifies the class
# (in kindergarten each tch lies in one school and one class type). Arm = `cltype`
# (levels small, reg, reg+A). School ids are the integers 1..80; sorted numerically.
data("star", package = "mlmRev")
k <- star[star$gr == "K", ]
types_per_school <- tapply(k$cltype, k$sch, function(x) length(unique(x)))
full_schools <- names(types_per_school)[!is.na(types_per_school) & types_per_school == 3]
keep_schools <- head(sort(as.integer(full_schools)), 24)
k <- k[as.integer(as.character(k$sch)) %in% keep_schools & !is.na(k$math), ]
stopifnot(all(table(droplevels(k$sch), k$cltype) > 0))  # still all three types after dropping NA math
stopifnot(!anyDuplicated(k$id))
k <- k[order(as.integer(as.character(k$sch)), as.integer(as.character(k$tch)),
             as.integer(as.character(k$id))), ]
star_out <- data.frame(participant = as.character(k$id),
                       school = as.integer(as.character(k$sch)),
                       class = as.integer(as.character(k$tch)),
                       arm = k$cltype,
                       math = k$math, read = k$read, sx = k$sx, eth = k$eth)
write_plain_csv(star_out, "star.csv")

## Reference numbers ------------------------------------------------------------------------------
# Every model is fitted on the CSV as written (read back), so the Python tests see the same data.
bt <- read.csv(file.path(outdir, "btheb.csv"), check.names = FALSE)
bt$treatment <- factor(bt$treatment, levels = c("TAU", "BtheB"))
bt$drug <- factor(bt$drug, levels = c("No", "Yes"))
bt$length <- factor(bt$length, levels = c("<6m", ">6m"))
an <- read.csv(file.path(outdir, "anorexia.csv"))
an$treat <- factor(an$treat, levels = c("Cont", "CBT", "FT"))
st <- read.csv(file.path(outdir, "star.csv"), colClasses = c(participant = "character"))
st$arm <- factor(st$arm, levels = c("reg", "small", "reg+A"))
st$sx <- factor(st$sx, levels = c("M", "F"))
st$school <- factor(st$school)
st$class <- factor(st$class)

# wide -> long BtheB over the four post-baseline visits, rows with missing bdi dropped
bt_long <- do.call(rbind, lapply(c(2, 3, 5, 8), function(m)
  data.frame(participant = bt$participant, drug = bt$drug, length = bt$length,
             treatment = bt$treatment, bdi.pre = bt$bdi.pre, month = m,
             bdi = bt[[paste0("bdi.", m, "m")]])))
bt_long <- bt_long[!is.na(bt_long$bdi), ]
bt_long <- bt_long[order(bt_long$participant, bt_long$month), ]
bt_long$participant <- factor(bt_long$participant)
bdi_pre_mean <- mean(bt$bdi.pre)

# sanity: the CSV round trip reproduces the package data
stopifnot(isTRUE(all.equal(coef(lm(bdi.8m ~ treatment + bdi.pre + drug + length, data = bt)),
                           coef(lm(bdi.8m ~ treatment + bdi.pre + drug + length, data = BtheB)))))
stopifnot(isTRUE(all.equal(unname(coef(lm(weight_post ~ treat + weight_pre, data = an))),
                           unname(coef(lm(Postwt ~ relevel(Treat, "Cont") + Prewt, data = anorexia))))))

num <- function(x) unname(as.numeric(x))

lm_oracle <- function(call, terms) {
  fit <- eval(parse(text = call))
  co <- summary(fit)$coefficients
  ci <- confint(fit, level = 0.95)
  list(call = call, function_ = "stats::lm", nobs = nobs(fit), df_residual = fit$df.residual,
       sigma = sigma(fit),
       terms = setNames(lapply(terms, function(t) list(
         estimate = num(co[t, "Estimate"]), se = num(co[t, "Std. Error"]),
         df = fit$df.residual, t = num(co[t, "t value"]), p = num(co[t, "Pr(>|t|)"]),
         ci95 = num(ci[t, ]))), terms))
}

# The refit with a tightly converged bobyqa shows how far the default optimum is determined:
# the REML surface is flat to ~1e-8 relative in theta, so SE, df and variances differ in about
# the 8th-9th significant digit between optimizers; fixed-effect estimates agree much closer.
tight_call <- "update(fit, control = lmerControl(optimizer = \"bobyqa\", optCtrl = list(rhoend = 1e-12, maxfun = 1e5)))"
lmer_numbers <- function(fit, terms, group) {
  co <- summary(fit, ddf = "Satterthwaite")$coefficients
  vc <- as.data.frame(VarCorr(fit))
  list(terms = setNames(lapply(terms, function(t) list(
         estimate = num(co[t, "Estimate"]), se = num(co[t, "Std. Error"]),
         df = num(co[t, "df"]), t = num(co[t, "t value"]), p = num(co[t, "Pr(>|t|)"]))), terms),
       sigma2_residual = sigma(fit)^2,
       var_group = num(vc$vcov[vc$grp == group]), theta = num(getME(fit, "theta")),
       reml_criterion = num(REMLcrit(fit)), reml_loglik = num(logLik(fit, REML = TRUE)))
}
lmer_oracle <- function(call, terms, group) {
  fit <- eval(parse(text = call))
  stopifnot(inherits(fit, "lmerModLmerTest"))
  tight <- eval(parse(text = tight_call))
  c(list(call = call, function_ = "lmerTest::lmer (REML; summary ddf = Satterthwaite)",
         nobs = nobs(fit), ngroups = num(ngrps(fit)[group]), group = group),
    lmer_numbers(fit, terms, group),
    list(singular = isSingular(fit), optimizer = fit@optinfo$optimizer,
         converged_messages = as.list(fit@optinfo$conv$lme4$messages),
         refit_tight = c(list(call = tight_call), lmer_numbers(tight, terms, group))))
}

oracles <- list(
  generated_by = "scripts/real_data.R",
  versions = list(
    R = R.version.string,
    lme4 = as.character(packageVersion("lme4")),
    lmerTest = as.character(packageVersion("lmerTest")),
    Matrix = as.character(packageVersion("Matrix")),
    stats = as.character(packageVersion("stats")),
    HSAUR3 = as.character(packageVersion("HSAUR3")),
    MASS = as.character(packageVersion("MASS")),
    mlmRev = as.character(packageVersion("mlmRev")),
    jsonlite = as.character(packageVersion("jsonlite"))),
  notes = list(
    data = paste("bt, an, st are btheb.csv, anorexia.csv, star.csv read back with read.csv;",
                 "reference levels: treatment TAU, drug No, length <6m, treat Cont, arm reg, sx M;",
                 "school and class are factors"),
    bt_long = paste("BtheB reshaped to long over months 2, 3, 5, 8 (columns bdi.2m..bdi.8m),",
                    "rows with missing bdi dropped; participant a factor; month 2 the reference"),
    btheb_centring = "bdi.pre centred at its mean over all 100 participants",
    bdi_pre_mean = bdi_pre_mean),
  btheb = list(
    ancova_8m = lm_oracle("lm(bdi.8m ~ treatment + bdi.pre + drug + length, data = bt)",
                          c("treatmentBtheB", "bdi.pre", "(Intercept)")),
    ancova_2m = lm_oracle("lm(bdi.2m ~ treatment + bdi.pre + drug + length, data = bt)",
                          c("treatmentBtheB", "bdi.pre", "(Intercept)")),
    ancova_8m_centred = lm_oracle(
      "lm(bdi.8m ~ treatment + I(bdi.pre - bdi_pre_mean) + drug + length, data = bt)",
      c("treatmentBtheB", "I(bdi.pre - bdi_pre_mean)", "(Intercept)")),
    ancova_2m_centred = lm_oracle(
      "lm(bdi.2m ~ treatment + I(bdi.pre - bdi_pre_mean) + drug + length, data = bt)",
      c("treatmentBtheB", "I(bdi.pre - bdi_pre_mean)", "(Intercept)")),
    long_repeated = lmer_oracle(
      "lmer(bdi ~ bdi.pre + factor(month) + treatment + drug + length + (1 | participant), data = bt_long, REML = TRUE)",
      c("treatmentBtheB", "bdi.pre"), "participant")),
  anorexia = list(
    ancova = lm_oracle("lm(weight_post ~ treat + weight_pre, data = an)",
                       c("treatCBT", "treatFT", "weight_pre")),
    post_only = lm_oracle("lm(weight_post ~ treat, data = an)", c("treatCBT", "treatFT"))),
  star = list(
    three_arm = lmer_oracle(
      "lmer(math ~ arm + factor(school) + (1 | class), data = st, REML = TRUE)",
      c("armsmall", "armreg+A"), "class"),
    three_arm_sx = lmer_oracle(
      "lmer(math ~ arm + factor(school) + sx + (1 | class), data = st, REML = TRUE)",
      c("armsmall", "armreg+A", "sxF"), "class"),
    two_arm = lmer_oracle(
      "lmer(math ~ arm + factor(school) + (1 | class), data = droplevels(st[st$arm != \"reg+A\", ]), REML = TRUE)",
      c("armsmall"), "class"))
)

json <- toJSON(oracles, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null")
json <- gsub("\"function_\"", "\"function\"", json, fixed = TRUE)
writeLines(json, file.path(outdir, "oracles.json"))
cat("wrote", file.path(outdir, c("btheb.csv", "anorexia.csv", "star.csv", "oracles.json")), sep = "\n")
