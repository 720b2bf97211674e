-- section: Probing
-- title: Probe accuracy by relative depth, per concept
-- chart: line x=depth y=accuracy series=model facet=concept err=accuracy_sd
-- note: Logistic-regression probes on mean-pooled residual-stream features, cross-validated over folds grouped by lexical item (a probe is tested on entities, adjectives, verbs or templates it never saw); the band is one standard deviation over folds. Depth is (layer + 1) / layers, so models of different depths compare. The control-task accuracy and selectivity are in the table below and in the probes view.
select model, concept, depth, accuracy, accuracy_sd
from probes
where pooling = 'mean' and hook = 'resid_post' and probe = 'logistic'
order by concept, model, depth
