use super::*;

const ECR: &str = "123456789012.dkr.ecr.eu-north-1.amazonaws.com";

fn ours(name: &str, path: &str) -> Application {
    Application {
        name: name.into(),
        source: AppSource::Ours {
            path: path.into(),
            revision: "main".into(),
            value_files: vec![],
            recurse: false,
        },
        images: vec![],
    }
}

fn helm(name: &str, path: &str, values: &str) -> Application {
    let mut a = ours(name, path);
    if let AppSource::Ours { value_files, .. } = &mut a.source {
        value_files.push(values.into());
    }
    a
}

fn overlay(svc: &str) -> String {
    format!(
        "resources:\n  - ../../base\nimages:\n  - name: {svc}\n    newName: {ECR}/{svc}\n    newTag: \"1.0.0\"\n"
    )
}

fn values(svc: &str) -> String {
    format!("image:\n  repository: {ECR}/{svc}\n  tag: 1.0.0\n")
}

/// The salon's layout: kustomize overlays and Helm value files, dev and prod.
fn salon() -> (Vec<Application>, BTreeMap<String, String>) {
    let mut files = BTreeMap::new();
    let mut apps = Vec::new();
    for env in ["prod", "dev"] {
        let dir = format!("apps/user_service/overlays/{env}");
        files.insert(format!("{dir}/kustomization.yaml"), overlay("user_service"));
        apps.push(ours(&format!("user-service-{env}"), &dir));
        files.insert(
            format!("apps/reports/values-{env}.yaml"),
            values("team/reports"),
        );
        apps.push(helm(
            &format!("reports-{env}"),
            "apps/reports",
            &format!("values-{env}.yaml"),
        ));
    }
    files.insert(
        "apps/user_service/base/deployment.yaml".into(),
        "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - image: user_service\n".into(),
    );
    (apps, files)
}

#[test]
fn kustomize_overlays_and_helm_value_files_become_services_with_environments_in_stage_order() {
    let (apps, files) = salon();
    let d = discover(&apps, &files, "main");
    assert_eq!(d.unplaced, vec![]);
    assert_eq!(d.order, vec!["dev", "prod"]);
    assert_eq!(
        d.reasons,
        vec!["'dev' is a development name", "'prod' is a production name"]
    );
    let names: Vec<&str> = d.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["reports", "user_service"]);
    let reports = &d.services[0];
    assert_eq!(reports.ecr.repository, "team/reports");
    assert_eq!(reports.ecr.account, "123456789012");
    assert_eq!(reports.ecr.region, "eu-north-1");
    assert_eq!(reports.image.as_str(), format!("{ECR}/team/reports"));
    assert_eq!(
        reports.environments,
        vec![
            Environment {
                name: "dev".into(),
                application: "reports-dev".into(),
                files: vec!["apps/reports/values-dev.yaml".into()],
            },
            Environment {
                name: "prod".into(),
                application: "reports-prod".into(),
                files: vec!["apps/reports/values-prod.yaml".into()],
            },
        ]
    );
    assert_eq!(
        d.services[1].environments[1].files,
        vec!["apps/user_service/overlays/prod/kustomization.yaml"]
    );
}

#[test]
fn what_cannot_be_placed_is_listed_with_its_reason_and_the_rest_is_still_placed() {
    let (mut apps, mut files) = salon();
    apps.push(Application {
        name: "grafana".into(),
        source: AppSource::Elsewhere {
            repo_url: "https://grafana.github.io/helm-charts".into(),
        },
        images: vec![],
    });
    let mut pinned = ours("user-service-qa", "apps/user_service/overlays/qa");
    if let AppSource::Ours { revision, .. } = &mut pinned.source {
        *revision = "v1.2.0".into();
    }
    apps.push(pinned);
    files.insert(
        "apps/cache/dev/redis.yaml".into(),
        "containers:\n  - image: docker.io/library/redis:7\n".into(),
    );
    apps.push(ours("cache-dev", "apps/cache/dev"));
    files.insert(
        "apps/flow/dev/kustomization.yaml".into(),
        format!("images: [{{name: flow, newName: {ECR}/flow}}]\n"),
    );
    apps.push(ours("flow-dev", "apps/flow/dev"));
    let d = discover(&apps, &files, "main");
    assert_eq!(d.services.len(), 2, "{:?}", d.unplaced);
    let said: Vec<(&str, &str)> = d
        .unplaced
        .iter()
        .map(|u| (u.what.as_str(), u.why.as_str()))
        .collect();
    let has = |what: &str, why: &str| {
        assert!(
            said.iter().any(|(w, y)| *w == what && y.contains(why)),
            "no '{what}: …{why}…' in {said:#?}"
        )
    };
    has(
        "application grafana",
        "its source is another repository (https://grafana.github.io/helm-charts)",
    );
    has(
        "application user-service-qa",
        "it deploys revision 'v1.2.0', not the branch 'main'",
    );
    has(
        "apps/cache/dev/redis.yaml:2",
        "image docker.io/library/redis is not in an ECR registry",
    );
    has("application cache-dev", "no file it renders");
    has(
        "apps/flow/dev/kustomization.yaml:1",
        "tugboat cannot edit this reference",
    );
}

#[test]
fn an_application_whose_image_is_set_outside_its_path_says_what_it_runs() {
    let mut files = BTreeMap::new();
    files.insert(
        "apps/api/overlays/dev/kustomization.yaml".into(),
        "resources:\n  - ../../base\n".into(),
    );
    let mut app = ours("api-dev", "apps/api/overlays/dev");
    app.images = vec![format!("{ECR}/api:2.0.0"), "docker.io/envoy:1.30".into()];
    let d = discover(&[app], &files, "main");
    assert!(d.services.is_empty());
    assert_eq!(d.unplaced.len(), 1);
    assert!(
        d.unplaced[0].why.contains(&format!(
            "it runs {ECR}/api:2.0.0: that reference is in a file outside its path"
        )),
        "{:?}",
        d.unplaced
    );
}

#[test]
fn a_file_two_environments_render_is_nobodys_and_is_said() {
    let mut files = BTreeMap::new();
    files.insert("apps/api/values.yaml".into(), values("api"));
    files.insert("apps/api/values-prod.yaml".into(), values("api"));
    let apps = vec![
        ours("api-dev", "apps/api"),
        helm("api-prod", "apps/api", "values-prod.yaml"),
    ];
    let d = discover(&apps, &files, "main");
    // dev renders both files of the directory; prod only its value file.
    assert_eq!(d.services.len(), 1);
    assert_eq!(
        d.services[0].environments,
        vec![Environment {
            name: "dev".into(),
            application: "api-dev".into(),
            files: vec!["apps/api/values.yaml".into()],
        }]
    );
    assert_eq!(d.unplaced[0].what, "apps/api/values-prod.yaml");
    assert!(
        d.unplaced[0]
            .why
            .contains("api-dev, api-prod all render it")
    );
}

#[test]
fn unknown_stage_names_go_before_production_and_a_repeated_stage_keeps_application_names() {
    let mut files = BTreeMap::new();
    let mut apps = Vec::new();
    for app in ["api-prod-eu", "api-prod-us", "api-blue", "api-dev"] {
        files.insert(format!("{app}/values.yaml"), values("api"));
        apps.push(ours(app, app));
    }
    let d = discover(&apps, &files, "main");
    let envs: Vec<&str> = d.services[0]
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(envs, vec!["dev", "api-blue", "api-prod-eu", "api-prod-us"]);
    assert_eq!(d.order, envs);
    assert!(d.reasons[1].contains("'api-blue' names no known stage"));
}

#[test]
fn only_ecr_hosts_are_ecr_and_their_account_region_and_name_are_read() {
    let of = |s: &str| Ecr::of(&Repository::parse(s).unwrap());
    let e = of("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/a/b").unwrap();
    assert_eq!(
        (e.region.as_str(), e.repository.as_str()),
        ("us-gov-west-1", "a/b")
    );
    assert!(of("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/x").is_some());
    assert!(of("12345.dkr.ecr.eu-north-1.amazonaws.com/x").is_none());
    assert!(of("public.ecr.aws/nginx/nginx").is_none());
    assert!(of("ghcr.io/salon/api").is_none());
    assert!(of("123456789012.dkr.ecr.eu-north-1.amazonaws.com.evil.io/x").is_none());
}

#[test]
fn the_files_to_read_are_each_applications_path_or_its_value_files() {
    let (apps, _) = salon();
    let w: Vec<String> = wanted(&apps).into_iter().collect();
    assert_eq!(
        w,
        vec![
            "apps/reports/values-dev.yaml",
            "apps/reports/values-prod.yaml",
            "apps/user_service/overlays/dev",
            "apps/user_service/overlays/prod",
        ]
    );
}

#[test]
fn a_recursing_directory_application_reads_below_its_path_and_a_plain_one_does_not() {
    let mut files = BTreeMap::new();
    files.insert("k8s/dev/api/deploy.yaml".into(), values("api"));
    let plain = ours("api-dev", "k8s/dev");
    assert!(
        discover(std::slice::from_ref(&plain), &files, "main")
            .services
            .is_empty()
    );
    let mut deep = plain;
    if let AppSource::Ours { recurse, .. } = &mut deep.source {
        *recurse = true;
    }
    assert_eq!(discover(&[deep], &files, "main").services.len(), 1);
}
